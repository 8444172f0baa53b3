"""From raw downloads to fairseq's binarised data: the download cache, corpora and evaluation sets, dictionaries,
SentencePiece training, binarisation.
"""
