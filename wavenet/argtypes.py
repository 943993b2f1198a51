"""argparse types for the scripts' flags: each checks one value and says what is allowed."""

import argparse
import math

from .corpus import MAX_LEVELS
from .errors import UserError


def positive_int(text):
    """argparse type: an integer > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


class Milliseconds(float):
    """A length given in milliseconds ("12.5ms"), as opposed to an int of samples."""

    def samples(self, rate):
        """The length in samples at `rate` Hz, at least 1."""
        return max(1, round(self * rate / 1000))


def samples_or_ms(text):
    """argparse type: a positive number of samples ("200") or of milliseconds ("12.5ms") -> int or Milliseconds."""
    if text.strip().lower().endswith("ms"):
        try:
            value = Milliseconds(text.strip()[:-2])
        except ValueError:
            value = Milliseconds("nan")
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be a positive number of milliseconds such as 12.5ms, got {text}")
        return value
    try:
        return positive_int(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"must be a positive number of samples, or of milliseconds such as 12.5ms, got {text}"
        ) from None


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive integer, got {text}")
    return value


def positive_float(text):
    """argparse type: a finite number > 0 (nan and inf are refused)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def non_negative_float(text):
    """argparse type: a finite number >= 0 (nan and inf are refused)."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be zero or a positive finite number, got {text}")
    return value


def temperature(text):
    """argparse type for --temperature: a finite number >= 0 (0: always the likeliest value).

    Raises UserError, which cli.run prints as `error: --temperature ...`: the message users and the
    Troubleshooting table already know.
    """
    try:
        return non_negative_float(text)
    except argparse.ArgumentTypeError:
        raise UserError(f"--temperature {float(text)}: pass 0 or a positive finite number") from None


def fraction(text):
    """argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (both excluded), got {text}")
    return value


SEED_MAX = 2**32 - 1  # numpy's np.random.seed takes no more


def seed(text):
    """argparse type: a random seed, an integer 0 .. 2**32-1."""
    value = int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_MAX}, got {text}")
    return value


def mu_law_levels(text):
    """argparse type: a number of mu-law levels, 2..256 (each code is stored in one byte)."""
    value = int(text)
    if not 2 <= value <= MAX_LEVELS:
        raise argparse.ArgumentTypeError(f"must be an integer from 2 to {MAX_LEVELS}, got {text}")
    return value


YES = ("1", "true", "yes", "on")
NO = ("0", "false", "no", "off")


def yes_no(text):
    """argparse type: a yes/no word (1/0, true/false, yes/no, on/off, any case) -> bool."""
    word = text.strip().lower()
    if word in YES or word in NO:
        return word in YES
    raise argparse.ArgumentTypeError(f"must be one of {'/'.join(YES)} or {'/'.join(NO)}, got {text!r}")


def is_integer(text):
    """Whether int(text) reads `text` as a whole number: a sign and decimal digits, of any script ('٣' is 3).

    str.isdigit would also pass superscripts and circled digits ('²', '①'), which int() refuses.
    """
    digits = text.strip().removeprefix("-").removeprefix("+")
    return digits.isdecimal()


def class_label(text):
    """argparse type for infer.py's --label: a class number or name, as given (the script looks it up in the
    model's classes)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a class number 0, 1, 2, ... or a class name, got ''")
    return text.strip()
