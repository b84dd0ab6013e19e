"""Errors that mean "the user asked for something that cannot work".

Every one of them carries a single line that says what is wrong and what to
do about it.  The command line prints that line and exits with status 2
instead of showing a traceback; the Python API simply raises them.
"""


class DigitnetError(ValueError):
    """Base class: a problem with the input, arguments or files, not a bug."""


class DataError(DigitnetError):
    """A data file or array is missing, corrupt, or of the wrong shape."""


class ModelFileError(DigitnetError):
    """A model file cannot be read: truncated, wrong version, wrong shapes."""


class ImageError(DigitnetError):
    """An image file cannot be decoded or holds no digit."""


class BlankImageError(ImageError):
    """The image holds no digit: nothing stands out from the background."""


class TrainingDiverged(DigitnetError):
    """The loss became NaN or infinite; the learning rate is usually too high."""
