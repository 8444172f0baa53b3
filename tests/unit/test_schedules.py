import pytest

from fairseq_xlmr.schedules import PiecewiseLinear


def test_interpolates_between_points_and_holds_outside():
    lam = PiecewiseLinear.parse("100:0,1100:1,2100:0.5")
    assert [lam(u) for u in (0, 100, 600, 1100, 1600, 2100, 9999)] == [0.0, 0.0, 0.5, 1.0, 0.75, 0.5, 0.5]


def test_bare_number_is_constant():
    lam = PiecewiseLinear.parse("0.3")
    assert lam(0) == lam(10**6) == 0.3


@pytest.mark.parametrize("text", ["0:0,0:1", "10:1,5:0", "a:b", "0:1,", "-1:0"])
def test_bad_schedule_names_field_and_rule(text):
    with pytest.raises(ValueError, match="`criterion.mlm_weight` must be"):
        PiecewiseLinear.parse(text, field="criterion.mlm_weight")
