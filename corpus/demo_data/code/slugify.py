"""Turn arbitrary titles into URL-friendly slugs."""

import re
import unicodedata

_NON_WORD = re.compile(r"[^a-z0-9]+")


def slugify(text: str, max_length: int = 60, separator: str = "-") -> str:
    """Return a lowercase ASCII slug for ``text``.

    Accented Latin letters are reduced to their base letter, anything that
    is not a letter or digit becomes a separator, and the result is trimmed
    to ``max_length`` characters without cutting a word in half.

    >>> slugify("Hello, World!")
    'hello-world'
    >>> slugify("Crème brûlée recipe")
    'creme-brulee-recipe'
    """
    normalized = unicodedata.normalize("NFKD", text)
    ascii_text = normalized.encode("ascii", "ignore").decode("ascii").lower()
    slug = _NON_WORD.sub(separator, ascii_text).strip(separator)
    if len(slug) <= max_length:
        return slug
    cut = slug[:max_length]
    if separator in cut and slug[max_length] != separator:
        cut = cut.rsplit(separator, 1)[0]
    return cut.strip(separator)
