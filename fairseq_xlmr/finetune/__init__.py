"""What the fine-tuning tasks share: the base task (vocabulary, model checks, head, freezing), the labelled tasks'
splits and labels, and where a run's raw files are.
"""
