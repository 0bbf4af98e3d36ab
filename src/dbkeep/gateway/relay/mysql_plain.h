/* Ordinary MariaDB statements the native relay forwards without asking Python (issue 12;
 * docs/DESIGN-NOTES.md, "The relay's plain queries").
 *
 * The statement guard's fast path (guard/mysql_grants.plain) passes, without its lexer, one
 * SELECT/INSERT/UPDATE/DELETE/REPLACE made of names, numbers, operators and plain '...'
 * literals, with no comment, no other quoting, no separator, no variable and no word `mysql` or
 * `definer`, while the session's database is known and is not `mysql`: no rule of the guard
 * can apply to such a text. mysql_plain_query() is the same test in C on the COM_QUERY's text,
 * stricter still: ASCII only (a multi-byte character set cannot hide a byte), and none of the
 * words after which the guard forgets cached account facts (GRANT, REVOKE, ROLE, USER, CALL,
 * EXECUTE). Python turns it on for a session (add(..., plain=True)) only while the session's
 * database is known and not `mysql`, and takes the session back when the database changes.
 * tests/unit/test_mysql_plain_relay.py holds it to the Python test.
 *
 * Pure: bytes in, verdict out. */
#ifndef DBKEEP_RELAY_MYSQL_PLAIN_H
#define DBKEEP_RELAY_MYSQL_PLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/* Python's \s with re.ASCII */
static inline bool mysql_plain_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* [A-Za-z0-9_\s,.=()<>!+*\/%&|^~-]: what may stand outside and inside a '...' literal */
static inline bool mysql_plain_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
        return true;
    if (mysql_plain_space(c))
        return true;
    return c != 0 && strchr(",.=()<>!+*/%&|^~-", c) != NULL;
}

/* whether `word` (lower case) occurs in text[0..n) in any case (text is ASCII here) */
static inline bool mysql_plain_contains(const unsigned char *text, size_t n, const char *word)
{
    size_t w = strlen(word);
    for (size_t i = 0; i + w <= n; i++)
        if ((text[i] | 0x20) == (unsigned char)word[0] && strncasecmp((const char *)text + i, word, w) == 0)
            return true;
    return false;
}

/* `text`: a COM_QUERY's statement (the packet's payload after the command byte), `n` bytes. */
static inline bool mysql_plain_query(const unsigned char *text, size_t n)
{
    static const char *const verbs[] = {"select", "insert", "update", "delete", "replace", NULL};
    static const char *const words[] = {"mysql", "definer", "grant", "revoke", "role", "user", "call",
                                        "execute", NULL};
    size_t i = 0;
    while (i < n && mysql_plain_space(text[i]))
        i++;
    size_t start = i;
    while (i < n && ((text[i] >= 'a' && text[i] <= 'z') || (text[i] >= 'A' && text[i] <= 'Z')))
        i++;
    bool verb = false;
    for (const char *const *v = verbs; *v != NULL && !verb; v++)
        verb = strlen(*v) == i - start && strncasecmp((const char *)text + start, *v, i - start) == 0;
    if (!verb || i >= n || !mysql_plain_space(text[i]))
        return false;
    bool quoted = false;
    for (; i < n; i++) {
        unsigned char c = text[i];
        if (c == '\'') {
            quoted = !quoted;
            continue;
        }
        if (!mysql_plain_char(c))
            return false;
        /* two-character comment openers anywhere, inside literals too, as guard/mysql_grants.plain refuses them */
        if (i + 1 < n && ((c == '-' && text[i + 1] == '-') || (c == '/' && text[i + 1] == '*')))
            return false;
    }
    if (quoted)
        return false;
    for (const char *const *w = words; *w != NULL; w++)
        if (mysql_plain_contains(text, n, *w))
            return false;
    return true;
}

#endif
