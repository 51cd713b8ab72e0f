/*
 * str_utils.c - small in-place string helpers with a tiny test driver.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Remove leading and trailing whitespace in place; returns s. */
char *str_trim(char *s)
{
    char *start = s;
    while (*start && isspace((unsigned char)*start))
        start++;

    char *end = start + strlen(start);
    while (end > start && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';

    if (start != s)
        memmove(s, start, (size_t)(end - start) + 1);
    return s;
}

/* Reverse a string in place; returns s. */
char *str_reverse(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n / 2; i++) {
        char tmp = s[i];
        s[i] = s[n - 1 - i];
        s[n - 1 - i] = tmp;
    }
    return s;
}

/* Count occurrences of character c in s. */
size_t str_count(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        if (*s == c)
            n++;
    return n;
}

/* Convert to lowercase in place; returns s. */
char *str_lower(char *s)
{
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

static int failures = 0;

static void check(const char *got, const char *want, const char *label)
{
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "FAIL %s: got \"%s\", want \"%s\"\n", label, got, want);
        failures++;
    }
}

int main(void)
{
    char a[] = "   hello world \t\n";
    check(str_trim(a), "hello world", "trim");

    char b[] = "abcdef";
    check(str_reverse(b), "fedcba", "reverse even");

    char c[] = "abc";
    check(str_reverse(c), "cba", "reverse odd");

    char d[] = "MiXeD CaSe";
    check(str_lower(d), "mixed case", "lower");

    if (str_count("banana", 'a') != 3) {
        fprintf(stderr, "FAIL count\n");
        failures++;
    }

    printf("%s\n", failures ? "some tests failed" : "all tests passed");
    return failures ? 1 : 0;
}
