"""One module per `xlmr` subcommand (file name = command name, dashes as underscores), read by fairseq_xlmr/cli.py.

Each has `add_arguments(parser)`, its options, and `main(args)`, which imports the code that does the work (torch,
fairseq) when the command runs: `xlmr NAME --help` imports this module only.
"""
