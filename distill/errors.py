"""One error type for bad input: the CLIs turn it into one sentence and exit code 2."""


class DistillInputError(Exception):
    """Bad user input (missing file, wrong columns, unknown task, mismatched materials).

    The message is one sentence that names the file or flag and says how to fix it.
    """


EXIT_BAD_INPUT = 2
