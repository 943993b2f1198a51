"""argparse types for the scripts' flags: each checks one value and says what is allowed."""

import argparse
import math

from .corpus import MAX_LEVELS
from .errors import UserError


def _checked(text, convert, allowed, wanted):
    """convert(text) where that reads it and `allowed` holds for the value, else ArgumentTypeError
    "must be <wanted>, got ...": one message for text that is no number (quoted: '', 'x') and for a number
    out of bounds. argparse would otherwise name the type function ("invalid positive_int value: 'x'")."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
    if not allowed(value):
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
    return value


def positive_int(text):
    """argparse type: an integer > 0."""
    return _checked(text, int, lambda value: value > 0, "a positive integer")


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
    return _checked(text, int, lambda value: value >= 0, "zero or a positive integer")


def positive_float(text):
    """argparse type: a finite number > 0 (nan and inf are refused)."""
    return _checked(text, float, lambda value: math.isfinite(value) and value > 0, "a positive finite number")


def non_negative_float(text):
    """argparse type: a finite number >= 0 (nan and inf are refused)."""
    return _checked(text, float, lambda value: math.isfinite(value) and value >= 0, "zero or a positive finite number")


def temperature(text):
    """argparse type for --temperature: a finite number >= 0 (0: always the likeliest value).

    Raises UserError, which cli.run prints as `error: --temperature ...`: the message users and the
    Troubleshooting table already know.
    """
    try:
        return non_negative_float(text)
    except argparse.ArgumentTypeError:
        try:
            shown = float(text)  # as the number reads: nan, inf, -0.5
        except ValueError:
            shown = repr(text)  # no number at all: 'x', ''
        raise UserError(f"--temperature {shown}: pass 0 or a positive finite number") from None


def fraction(text):
    """argparse type: a number strictly between 0 and 1."""
    return _checked(text, float, lambda value: 0 < value < 1, "a number between 0 and 1 (both excluded)")


SEED_MAX = 2**32 - 1  # numpy's np.random.seed takes no more


def seed(text):
    """argparse type: a random seed, an integer 0 .. 2**32-1."""
    return _checked(text, int, lambda value: 0 <= value <= SEED_MAX, f"an integer from 0 to {SEED_MAX}")


def mu_law_levels(text):
    """argparse type: a number of mu-law levels, 2..256 (each code is stored in one byte)."""
    return _checked(text, int, lambda value: 2 <= value <= MAX_LEVELS, f"an integer from 2 to {MAX_LEVELS}")


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
