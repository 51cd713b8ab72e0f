"""Unit tests for slugify.py."""

import unittest

from slugify import slugify


class SlugifyTests(unittest.TestCase):
    def test_basic_title(self):
        self.assertEqual(slugify("Ten Tips for Better Sleep"), "ten-tips-for-better-sleep")

    def test_punctuation_collapses(self):
        self.assertEqual(slugify("What's new?!  Version 2.0"), "what-s-new-version-2-0")

    def test_accents_are_removed(self):
        self.assertEqual(slugify("Año nuevo en Málaga"), "ano-nuevo-en-malaga")

    def test_custom_separator(self):
        self.assertEqual(slugify("a b c", separator="_"), "a_b_c")

    def test_empty_string(self):
        self.assertEqual(slugify(""), "")

    def test_only_symbols(self):
        self.assertEqual(slugify("!!! ???"), "")

    def test_truncation_keeps_whole_words(self):
        title = "the quick brown fox jumps over the lazy dog"
        slug = slugify(title, max_length=20)
        self.assertLessEqual(len(slug), 20)
        self.assertEqual(slug, "the-quick-brown-fox")

    def test_truncation_exact_boundary(self):
        self.assertEqual(slugify("abc def", max_length=3), "abc")

    def test_non_latin_text_is_dropped(self):
        # Scripts without an ASCII decomposition disappear entirely.
        self.assertEqual(slugify("東京 travel guide"), "travel-guide")


if __name__ == "__main__":
    unittest.main()
