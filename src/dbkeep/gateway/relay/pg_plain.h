/* Ordinary PostgreSQL queries the native relay forwards without asking Python (issue 12;
 * docs/DESIGN-NOTES.md, "Statement guard (PostgreSQL)", "The relay's plain queries").
 *
 * An inspected session's Query ('Q') is reported to Python, whose guard parses it with pglast
 * and passes at once what holds no node any rule reads (guard/pg_statements.plain: no role
 * statement, no SET, no function call ...). Most of an application's traffic is such a query,
 * and the report costs a thread hand-off and a Python call per statement. pg_plain_query()
 * recognises, by a lexer and no parser, a subset of those statements: one SELECT, INSERT,
 * UPDATE or DELETE made only of words, literals, operators and punctuation, in which no word
 * is followed by '(' (what a function call needs; the few keywords before a subquery or a
 * list excepted) and no keyword that PostgreSQL's grammar turns into a function call appears
 * (AT TIME ZONE, SIMILAR TO ...). Everything else is reported as before: comments, dollar
 * quotes, backslashes in strings (their meaning depends on standard_conforming_strings),
 * non-ASCII bytes (their meaning depends on client_encoding), several statements.
 *
 * It must never say "plain" for a text pglast would not call plain; tests/unit/
 * test_pg_plain_relay.py checks that over every keyword of the grammar and a corpus of
 * statements and their mutations. A text it passes that the engine cannot parse gets the
 * engine's syntax error instead of the guard's; neither runs anything.
 *
 * Pure: bytes in, verdict out; no allocation.
 */
#ifndef DBKEEP_RELAY_PG_PLAIN_H
#define DBKEEP_RELAY_PG_PLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

enum { PG_TOK_NONE, PG_TOK_WORD, PG_TOK_NAME, PG_TOK_OTHER };

static inline bool pg_plain_word_is(const unsigned char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && strncasecmp((const char *)w, kw, n) == 0;
}

static inline bool pg_plain_word_in(const unsigned char *w, size_t n, const char *const *list)
{
    for (; *list != NULL; list++)
        if (pg_plain_word_is(w, n, *list))
            return true;
    return false;
}

static inline bool pg_plain_letter(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* `body` is the Query message's body: the query text and its terminating NUL (`n` bytes). */
static inline bool pg_plain_query(const unsigned char *body, size_t n)
{
    /* Words that may stand before '(' without calling anything: reserved (or column-name)
     * keywords of the grammar, which can never name a function unqualified, before a subquery,
     * a list or an expression in parentheses. */
    static const char *const before_paren[] = {
        "select", "from", "where", "and", "or", "not", "in", "values", "exists", "any", "all", "some",
        "on", "as", "when", "then", "else", "returning", "having", "limit", "offset", "using", "union",
        "intersect", "except", "distinct", "lateral", NULL};
    /* Keywords the grammar turns into a function call (FuncCall) without a '(' after a name. */
    static const char *const calls[] = {"at", "similar", "overlaps", "normalized", "system_user", "collation", NULL};
    static const char *const first[] = {"select", "insert", "update", "delete", NULL};

    if (n < 2 || body[n - 1] != '\0')
        return false;
    n--;
    int prev = PG_TOK_NONE;             /* the previous token's kind (NAME: a quoted or qualified name) */
    const unsigned char *pw = NULL;     /* the previous token when a WORD */
    size_t pwn = 0;
    bool dot = false;                   /* the previous token is '.': the next word is a name */
    int into = 0;                       /* after INTO: 1 at a name's part, 2 after its '.', 3 on a part */
    bool ended = false;                 /* a ';' was seen: only blanks and ';' may follow */
    size_t i = 0;
    while (i < n) {
        unsigned char c = body[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            i++;
            continue;
        }
        if (c < 0x20 || c > 0x7e)
            return false; /* a control or non-ASCII byte */
        if (ended && c != ';')
            return false; /* a second statement */
        if (prev == PG_TOK_NONE && !pg_plain_letter(c))
            return false; /* the statement begins with its keyword */
        bool after_dot = dot;
        dot = false;
        if (pg_plain_letter(c)) {
            size_t start = i;
            while (i < n && (pg_plain_letter(body[i]) || (body[i] >= '0' && body[i] <= '9')))
                i++;
            const unsigned char *w = body + start;
            size_t wn = i - start;
            if (prev == PG_TOK_NONE && !pg_plain_word_in(w, wn, first))
                return false;
            if (pg_plain_word_in(w, wn, calls))
                return false;
            if (into == 1 || into == 2)
                into = 3;
            else
                into = pg_plain_word_is(w, wn, "into") ? 1 : 0;
            prev = after_dot ? PG_TOK_NAME : PG_TOK_WORD;
            pw = w;
            pwn = wn;
            continue;
        }
        if (c >= '0' && c <= '9') {
            while (i < n && ((body[i] >= '0' && body[i] <= '9') || body[i] == '.'))
                i++;
            prev = PG_TOK_OTHER;
            into = 0;
            continue;
        }
        if (c == '\'' || c == '"') {
            /* a string (E'', B'', X'', N'', U&'' too: their prefix lexes as a word or '&') or a
             * quoted identifier; a doubled quote stays inside; a backslash means "ask Python" */
            i++;
            for (;;) {
                if (i >= n)
                    return false; /* unterminated */
                unsigned char q = body[i];
                if (q == '\\')
                    return false;
                if ((q < 0x20 && q != '\t' && q != '\n' && q != '\r') || q > 0x7e)
                    return false; /* a control or non-ASCII byte: its meaning depends on client_encoding */
                i++;
                if (q == c) {
                    if (i < n && body[i] == c) {
                        i++;
                        continue;
                    }
                    break;
                }
            }
            if (c == '"') {
                into = (into == 1 || into == 2) ? 3 : 0;
                prev = PG_TOK_NAME;
            } else {
                into = 0;
                prev = PG_TOK_OTHER;
            }
            continue;
        }
        switch (c) {
        case '(':
            if (prev == PG_TOK_NAME || (prev == PG_TOK_WORD && !pg_plain_word_in(pw, pwn, before_paren)))
                if (into != 3)
                    return false; /* a name before '(': a function call (INSERT INTO t (...) excepted) */
            into = 0;
            break;
        case '.':
            if (i + 1 < n && body[i + 1] >= '0' && body[i + 1] <= '9') {
                i++;
                while (i < n && ((body[i] >= '0' && body[i] <= '9') || body[i] == '.'))
                    i++;
                prev = PG_TOK_OTHER;
                into = 0;
                continue;
            }
            into = into == 3 ? 2 : 0;
            dot = true;
            break;
        case ';':
            ended = true;
            into = 0;
            break;
        case ')': case ',': case '[': case ']': case ':':
        case '+': case '*': case '<': case '>': case '=': case '~': case '!':
        case '@': case '#': case '%': case '^': case '&': case '|': case '`': case '?':
            into = 0;
            break;
        case '-':
            if (i + 1 < n && body[i + 1] == '-')
                return false; /* a comment */
            into = 0;
            break;
        case '/':
            if (i + 1 < n && body[i + 1] == '*')
                return false; /* a comment */
            into = 0;
            break;
        default: /* '$' (dollar quotes, parameters), '\\', '{', '}' */
            return false;
        }
        prev = PG_TOK_OTHER;
        i++;
    }
    return prev != PG_TOK_NONE;
}

#endif
