/* keyroll._cutter: the candidate cutting of `keyroll.recognise.Recogniser.words` in one pass.
 *
 * Optional accelerator (built by hatch_build.py when a C compiler is there): recognise.py
 * falls back to its regular expressions without it, and tests check that both cut exactly the
 * same candidates. Each function below ports one regular expression of recognise.py; the
 * comment above it names the expression. Python's `\s` on str is Py_UNICODE_ISSPACE.
 *
 * words(text, shortest, ops, spaced_ops, spaced_min, windows, spaced, escapes)
 *   -> (plain: set[str], special: set[str])
 *   Every candidate `Recogniser.words` would try, kept only when it can spell a recorded
 *   value: a candidate that needs decoding (newline, backslash, quote, percent or non-ASCII)
 *   from `shortest` characters, a plain one only when ops[len] is non-zero; one holding
 *   whitespace (only a value with spaces can be spelled so) from `spaced_min` characters when
 *   it needs decoding, else only when spaced_ops[len] is non-zero. `windows`: the
 *   (characters, words) of the values with spaces looked for in runs of words (`spaced`);
 *   `escapes`: the text holds "\\ " or "\\<tab>" (printf %q words are cut on its lines).
 * runs(text, shortest) -> list[list[tuple[int, int]]]
 *   The runs of wrapped base64/hex lines of `_block_candidates` (the base64 part of each
 *   line), only those whose candidate spans can reach `shortest` characters.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <wchar.h>

typedef struct {
    Py_UCS4 *u; /* the text's characters, copied once (no per-character kind switch) */
    Py_ssize_t len;
    PyObject *text;
    PyObject *out;     /* plain candidates */
    PyObject *special; /* candidates that need decoding */
    Py_ssize_t shortest;
    const unsigned char *ops;
    Py_ssize_t nops;
    const unsigned char *spaced_ops;
    Py_ssize_t nspaced_ops;
    Py_ssize_t spaced_min;
    /* whether the word or line being cut holds a character that needs decoding, or
     * whitespace: without, none of its candidates does (no per-candidate scan) */
    int ctx_full, ctx_white;
    /* the distinct spans kept so far (open addressing on their characters' hash): a span
     * seen again costs a hash and a compare, not a Python string */
    Py_ssize_t *seen;
    uint64_t *hashes;
    Py_ssize_t seen_cap, seen_len;
} Cut;

#define CH(c, i) ((c)->u[(i)])
#if PY_VERSION_HEX < 0x030C0000
#define READY(text) PyUnicode_READY(text)
#else
#define READY(text) 0
#endif

/* character classes of the ASCII characters (filled at import); anything above 127 is in
 * none but PIECE's, and is whitespace when Py_UNICODE_ISSPACE says so */
enum { ALPHABET = 1, PIECE_STOP = 2, B64 = 4, TRIMMED = 8, FULL = 16, WHITE = 32, QUOTES = 64 };
static unsigned char classes[128];

static void fill(const char *chars, unsigned char bit) {
    for (const char *p = chars; *p; p++)
        classes[(unsigned char)*p] |= bit;
}

static void init_classes(void) {
    for (int ch = 0; ch < 128; ch++) {
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (alnum)
            classes[ch] |= ALPHABET | B64;
        if (Py_UNICODE_ISSPACE((Py_UCS4)ch))
            classes[ch] |= WHITE;
    }
    fill("+/=_%.~-", ALPHABET);                  /* _ALPHABET = [A-Za-z0-9+/=_%.~-] */
    fill("\"'=:@/,;&?#<>()[]{}|`", PIECE_STOP); /* _PIECE = [^\s"'=:@/,;&?#<>()\[\]{}|`] */
    fill("+/=_-", B64);                         /* wrapped lines: [A-Za-z0-9+/=_-] */
    fill("\"'`()[]{}<>,;.", TRIMMED);           /* _TRIM */
    fill("\n\\'%", FULL);                      /* _NEEDS_FULL (with everything above 127) */
    fill("\"',\\", QUOTES);                     /* after a wrapped line: ["',\\]* */
}

static inline int has(Py_UCS4 ch, unsigned char bit) { return ch < 128 && (classes[ch] & bit); }
static inline int space(Py_UCS4 ch) { return ch < 128 ? classes[ch] & WHITE : Py_UNICODE_ISSPACE(ch); }
#define SPACE(ch) space(ch)
static int alphabet(Py_UCS4 ch) { return has(ch, ALPHABET); }
static int piece(Py_UCS4 ch) { return !space(ch) && !has(ch, PIECE_STOP); }
static int b64(Py_UCS4 ch) { return has(ch, B64); }

/* the first ch in text[a:b], or b */
static Py_ssize_t find_char(Cut *c, Py_ssize_t a, Py_ssize_t b, Py_UCS4 ch) {
    if (a >= b)
        return b;
#if WCHAR_MAX > 0xFFFF
    if (sizeof(wchar_t) == sizeof(Py_UCS4)) {
        const wchar_t *at = wmemchr((const wchar_t *)(c->u + a), (wchar_t)ch, (size_t)(b - a));
        return at == NULL ? b : (Py_ssize_t)((const Py_UCS4 *)at - c->u);
    }
#endif
    while (a < b && c->u[a] != ch)
        a++;
    return a;
}

/* 1 the first time text[a:b] is seen in this call, 0 after, -1 out of memory */
static int first_time(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(b - a);
    for (Py_ssize_t i = a; i < b; i++)
        h = (h ^ c->u[i]) * 1099511628211ULL;
    h |= 1; /* 0 marks a free slot */
    if (2 * (c->seen_len + 1) > c->seen_cap) {
        Py_ssize_t cap = c->seen_cap ? 2 * c->seen_cap : 1024;
        Py_ssize_t *seen = PyMem_Malloc(2 * cap * sizeof(Py_ssize_t));
        uint64_t *hashes = PyMem_Calloc(cap, sizeof(uint64_t));
        if (seen == NULL || hashes == NULL) {
            PyMem_Free(seen);
            PyMem_Free(hashes);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t k = 0; k < c->seen_cap; k++) {
            if (!c->hashes[k])
                continue;
            Py_ssize_t slot = (Py_ssize_t)(c->hashes[k] & (uint64_t)(cap - 1));
            while (hashes[slot])
                slot = (slot + 1) & (cap - 1);
            hashes[slot] = c->hashes[k];
            seen[2 * slot] = c->seen[2 * k];
            seen[2 * slot + 1] = c->seen[2 * k + 1];
        }
        PyMem_Free(c->seen);
        PyMem_Free(c->hashes);
        c->seen = seen;
        c->hashes = hashes;
        c->seen_cap = cap;
    }
    Py_ssize_t slot = (Py_ssize_t)(h & (uint64_t)(c->seen_cap - 1));
    while (c->hashes[slot]) {
        Py_ssize_t sa = c->seen[2 * slot], sb = c->seen[2 * slot + 1];
        if (c->hashes[slot] == h && sb - sa == b - a
            && memcmp(c->u + sa, c->u + a, (size_t)(b - a) * sizeof(Py_UCS4)) == 0)
            return 0;
        slot = (slot + 1) & (c->seen_cap - 1);
    }
    c->hashes[slot] = h;
    c->seen[2 * slot] = a;
    c->seen[2 * slot + 1] = b;
    c->seen_len++;
    return 1;
}

/* add text[a:b] to the output when it can spell a recorded value (see the header) */
static int keep(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t n = b - a;
    if (n <= 0)
        return 0;
    int plain_len = n < c->nops && c->ops[n];
    int spaced_len = n < c->nspaced_ops && c->spaced_ops[n];
    if (n < c->shortest && n < c->spaced_min && !plain_len && !spaced_len)
        return 0;
    int full = 0, white = 0;
    if (c->ctx_full || c->ctx_white) {
        if (!plain_len && !spaced_len && !c->ctx_full)
            return 0; /* plain, of no length looked for */
        for (Py_ssize_t i = a; i < b; i++) {
            Py_UCS4 ch = CH(c, i);
            if (ch > 127 || (classes[ch] & FULL))
                full = 1;
            if (SPACE(ch))
                white = 1;
            if (full && white)
                break;
        }
    }
    int wanted = white ? (full ? n >= c->spaced_min : spaced_len)
                       : (full ? n >= c->shortest : plain_len);
    if (!wanted)
        return 0;
    int fresh = first_time(c, a, b);
    if (fresh <= 0)
        return fresh;
    PyObject *word = PyUnicode_Substring(c->text, a, b);
    if (word == NULL)
        return -1;
    int failed = PySet_Add(full ? c->special : c->out, word);
    Py_DECREF(word);
    return failed;
}

static void strip_class(Cut *c, Py_ssize_t *a, Py_ssize_t *b, unsigned char bit) {
    while (*a < *b && has(CH(c, *a), bit))
        (*a)++;
    while (*b > *a && has(CH(c, *b - 1), bit))
        (*b)--;
}

static void strip_equals(Cut *c, Py_ssize_t *a, Py_ssize_t *b) {
    while (*a < *b && CH(c, *a) == '=')
        (*a)++;
    while (*b > *a && CH(c, *b - 1) == '=')
        (*b)--;
}

/* a candidate, then as `words` derives more from every candidate: strip(_TRIM), and
 * strip("=") of each of the two (a no-op unless it starts or ends with "=") */
static int emit(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t ta = a, tb = b;
    strip_class(c, &ta, &tb, TRIMMED);
    Py_ssize_t spans[4][2] = {{a, b}, {ta, tb}, {a, b}, {ta, tb}};
    for (int k = 2; k < 4; k++)
        strip_equals(c, &spans[k][0], &spans[k][1]);
    for (int k = 0; k < 4; k++) {
        if ((k == 1 && ta == a && tb == b) || (k >= 2 && spans[k][0] == spans[k - 2][0]
                                               && spans[k][1] == spans[k - 2][1]))
            continue; /* the same span again */
        if (keep(c, spans[k][0], spans[k][1]) < 0)
            return -1;
    }
    return 0;
}

/* maximal runs of a class: _ALPHABET.findall, _PIECE.findall */
static int class_runs(Cut *c, Py_ssize_t a, Py_ssize_t b, int (*cls)(Py_UCS4)) {
    Py_ssize_t i = a;
    while (i < b) {
        if (!cls(CH(c, i))) {
            i++;
            continue;
        }
        Py_ssize_t s = i;
        while (i < b && cls(CH(c, i)))
            i++;
        if ((s != a || i != b) && emit(c, s, i) < 0) /* the whole word is emitted already */
            return -1;
    }
    return 0;
}

/* _DOUBLE_QUOTED = "((?:[^"\\\n]|\\.)*)" : findall's group, leftmost, non-overlapping */
static int double_quoted(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t p = a;
    while (p < b) {
        if (CH(c, p) != '"') {
            p++;
            continue;
        }
        Py_ssize_t q = p + 1;
        int matched = 0;
        while (q < b) {
            Py_UCS4 ch = CH(c, q);
            if (ch == '"') {
                matched = 1;
                break;
            }
            if (ch == '\n')
                break;
            if (ch == '\\') {
                if (q + 1 < b && CH(c, q + 1) != '\n') {
                    q += 2;
                    continue;
                }
                break;
            }
            q++;
        }
        if (matched) {
            if (emit(c, p + 1, q) < 0)
                return -1;
            p = q + 1;
        } else {
            p++;
        }
    }
    return 0;
}

/* _SINGLE_QUOTED = '([^'\n]*)' */
static int single_quoted(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t p = a;
    while (p < b) {
        if (CH(c, p) != '\'') {
            p++;
            continue;
        }
        Py_ssize_t q = p + 1;
        while (q < b && CH(c, q) != '\'' && CH(c, q) != '\n')
            q++;
        if (q < b && CH(c, q) == '\'') {
            if (emit(c, p + 1, q) < 0)
                return -1;
            p = q + 1;
        } else {
            p++;
        }
    }
    return 0;
}

/* _AFTER_EQUALS = (?<==)[^\n]+ , each match str.strip()ped: in each line, what follows its
 * first "=" that is not the line's last character */
static int after_equals(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t p = a;
    while (p < b) {
        Py_ssize_t end = p;
        while (end < b && CH(c, end) != '\n')
            end++;
        for (Py_ssize_t i = p; i + 1 < end; i++) {
            if (CH(c, i) == '=') {
                Py_ssize_t s = i + 1, e = end;
                while (s < e && SPACE(CH(c, s)))
                    s++;
                while (e > s && SPACE(CH(c, e - 1)))
                    e--;
                if (emit(c, s, e) < 0)
                    return -1;
                break;
            }
        }
        p = end + 1;
    }
    return 0;
}

/* _DSN_FIRST = ://[^\s:/@]*:([^\s@]+)@ and _DSN_LAST = ://[^\s:/@]*:(\S+)@ */
static int dsn(Cut *c, Py_ssize_t a, Py_ssize_t b, int last) {
    Py_ssize_t i = a;
    while (i + 2 < b) {
        if (!(CH(c, i) == ':' && CH(c, i + 1) == '/' && CH(c, i + 2) == '/')) {
            i++;
            continue;
        }
        Py_ssize_t u = i + 3;
        while (u < b) {
            Py_UCS4 ch = CH(c, u);
            if (SPACE(ch) || ch == ':' || ch == '/' || ch == '@')
                break;
            u++;
        }
        if (u >= b || CH(c, u) != ':') {
            i++;
            continue;
        }
        Py_ssize_t s = u + 1, e = s, at = -1;
        if (!last) {
            while (e < b && !SPACE(CH(c, e)) && CH(c, e) != '@')
                e++;
            if (e > s && e < b && CH(c, e) == '@')
                at = e;
        } else {
            while (e < b && !SPACE(CH(c, e)))
                e++;
            for (Py_ssize_t k = e - 1; k > s; k--) {
                if (CH(c, k) == '@') {
                    at = k;
                    break;
                }
            }
        }
        if (at < 0) {
            i++;
            continue;
        }
        if (emit(c, s, at) < 0)
            return -1;
        i = at + 1;
    }
    return 0;
}

/* a word long enough to hold a value: itself and every cutter `words` runs on the joined
 * long words (none crosses a word); a cutter whose first character is absent is skipped */
static int word(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    int dq = 0, sq = 0, eq = 0, colon = 0, full = 0, white = 0;
    for (Py_ssize_t i = a; i < b; i++) {
        Py_UCS4 ch = CH(c, i);
        dq |= ch == '"';
        sq |= ch == '\'';
        eq |= ch == '=';
        colon |= ch == ':';
        full |= ch > 127 || (classes[ch] & FULL);
        white |= SPACE(ch) != 0;
    }
    c->ctx_full = full;
    c->ctx_white = white;
    if (emit(c, a, b) < 0 || class_runs(c, a, b, alphabet) < 0 || class_runs(c, a, b, piece) < 0
        || (dq && double_quoted(c, a, b) < 0) || (sq && single_quoted(c, a, b) < 0)
        || (eq && after_equals(c, a, b) < 0) || (colon && (dsn(c, a, b, 0) < 0
                                                            || dsn(c, a, b, 1) < 0)))
        return -1;
    return 0;
}

/* _WORD = (?:\\.|[^\s\\])+ over one line holding "\ " or "\<tab>" (printf %q) */
static int escaped_words(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t p = a;
    while (p < b) {
        Py_ssize_t q = p;
        for (;;) {
            if (q >= b)
                break;
            Py_UCS4 ch = CH(c, q);
            if (ch == '\\') {
                if (q + 1 < b && CH(c, q + 1) != '\n') {
                    q += 2;
                    continue;
                }
                break;
            }
            if (SPACE(ch))
                break;
            q++;
        }
        if (q > p) {
            if (word(c, p, q) < 0)
                return -1;
            p = q;
        } else {
            p++;
        }
    }
    return 0;
}

static void free_cut(Cut *c) {
    PyMem_Free(c->u);
    PyMem_Free(c->seen);
    PyMem_Free(c->hashes);
}

static PyObject *words(PyObject *self, PyObject *args) {
    PyObject *text, *windows;
    Py_ssize_t shortest, spaced_min, bounds_cap = 0, *bounds = NULL;
    Py_buffer ops, spaced_ops;
    int spaced, escapes;
    if (!PyArg_ParseTuple(args, "Uny*y*nO!pp", &text, &shortest, &ops, &spaced_ops, &spaced_min,
                          &PyTuple_Type, &windows, &spaced, &escapes))
        return NULL;
    Py_ssize_t nwin = PyTuple_GET_SIZE(windows);
    Py_ssize_t *width = PyMem_Calloc(2 * (nwin ? nwin : 1), sizeof(Py_ssize_t));
    Cut c = {NULL, 0, text, NULL, NULL, shortest < 1 ? 1 : shortest, (const unsigned char *)ops.buf,
             ops.len, (const unsigned char *)spaced_ops.buf, spaced_ops.len, spaced_min,
             1, 1, NULL, NULL, 0, 0};
    if (READY(text) < 0 || width == NULL)
        goto fail;
    c.len = PyUnicode_GET_LENGTH(text);
    if (c.len >= (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "text too long for the C cutter");
        goto fail;
    }
    c.u = PyUnicode_AsUCS4Copy(text);
    if (c.u == NULL)
        goto fail;
    for (Py_ssize_t k = 0; k < nwin; k++) { /* (characters, words) of each value with spaces */
        PyObject *pair = PyTuple_GET_ITEM(windows, k);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "windows must be (characters, words) pairs");
            goto fail;
        }
        width[2 * k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
        width[2 * k + 1] = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 1));
        if (width[2 * k] < 2 || width[2 * k + 1] < 2) { /* a run has 2 words or more */
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError,
                                "window widths must be at least 2 characters and 2 words");
            goto fail;
        }
    }
    c.out = PySet_New(NULL);
    c.special = PySet_New(NULL);
    if (c.out == NULL || c.special == NULL)
        goto fail;
    Py_ssize_t line = 0;
    while (line <= c.len) {
        Py_ssize_t end = find_char(&c, line, c.len, '\n');
        /* the words of the line: \S{shortest,} are cut further; every word start and end is
         * kept for the runs of words */
        Py_ssize_t i = line, nwords = 0;
        while (i < end) {
            if (SPACE(CH(&c, i))) {
                i++;
                continue;
            }
            Py_ssize_t s = i;
            while (i < end && !SPACE(CH(&c, i)))
                i++;
            if (i - s >= c.shortest && word(&c, s, i) < 0)
                goto fail;
            if (spaced) {
                if (nwords == bounds_cap) {
                    Py_ssize_t cap = bounds_cap ? 2 * bounds_cap : 256;
                    Py_ssize_t *grown = PyMem_Realloc(bounds, 2 * cap * sizeof(Py_ssize_t));
                    if (grown == NULL) {
                        PyErr_NoMemory();
                        goto fail;
                    }
                    bounds = grown;
                    bounds_cap = cap;
                }
                bounds[2 * nwords] = s;
                bounds[2 * nwords + 1] = i;
                nwords++;
            }
        }
        /* a line holding "\ " or "\<tab>" (printf %q): _WORD = (?:\\.|[^\s\\])+ */
        if (escapes) {
            for (Py_ssize_t k = find_char(&c, line, end, '\\'); k + 1 < end;
                 k = find_char(&c, k + 1, end, '\\')) {
                if (CH(&c, k + 1) == ' ' || CH(&c, k + 1) == '\t') {
                    if (escaped_words(&c, line, end) < 0)
                        goto fail;
                    break;
                }
            }
        }
        if (spaced) {
            c.ctx_full = c.ctx_white = 1; /* a line: every candidate is checked */
            /* (?<!\S)(?=(\S[^\n]{n-2}\S)(?!\S)): from a word's start to a later word's end of
             * the same line, n characters and as many words as the value (str.split) */
            for (Py_ssize_t k = 0; k < nwin; k++) {
                Py_ssize_t n = width[2 * k], w = width[2 * k + 1];
                for (Py_ssize_t j = 0; j + w <= nwords; j++) {
                    Py_ssize_t p = bounds[2 * j], q = bounds[2 * (j + w - 1) + 1];
                    if (q - p == n && emit(&c, p, q) < 0)
                        goto fail;
                }
            }
            /* and over the whole text, by lines: quoted strings and KEY=value tails */
            if ((find_char(&c, line, end, '"') < end && double_quoted(&c, line, end) < 0)
                || (find_char(&c, line, end, '\'') < end && single_quoted(&c, line, end) < 0)
                || (find_char(&c, line, end, '=') < end && after_equals(&c, line, end) < 0))
                goto fail;
        }
        line = end + 1;
    }
    PyMem_Free(bounds);
    free_cut(&c);
    PyMem_Free(width);
    PyBuffer_Release(&ops);
    PyBuffer_Release(&spaced_ops);
    PyObject *both = PyTuple_Pack(2, c.out, c.special);
    Py_DECREF(c.out);
    Py_DECREF(c.special);
    return both;
fail:
    free_cut(&c);
    PyMem_Free(bounds);
    PyMem_Free(width);
    PyBuffer_Release(&ops);
    PyBuffer_Release(&spaced_ops);
    Py_XDECREF(c.out);
    Py_XDECREF(c.special);
    return NULL;
}

/* _WRAPPED_LINES = ^[ \t]*([A-Za-z0-9+/=_-]{4,})["',\\]*[ \t]*\r?$ (re.M): the base64 part
 * of a line that is nothing else, or -1 */
static Py_ssize_t wrapped(Cut *c, Py_ssize_t line, Py_ssize_t end, Py_ssize_t *group_end) {
    Py_ssize_t i = line;
    while (i < end && (CH(c, i) == ' ' || CH(c, i) == '\t'))
        i++;
    Py_ssize_t s = i;
    while (i < end && b64(CH(c, i)))
        i++;
    if (i - s < 4)
        return -1;
    *group_end = i;
    while (i < end && has(CH(c, i), QUOTES))
        i++;
    while (i < end && (CH(c, i) == ' ' || CH(c, i) == '\t'))
        i++;
    if (i < end && CH(c, i) == '\r')
        i++;
    return i == end ? s : -1;
}

/* _LINE_TAIL = [A-Za-z0-9+/=_-]{8,}$ on the line before a run (after rstrip("\r")) */
static Py_ssize_t tail_start(Cut *c, Py_ssize_t run_line) {
    if (run_line == 0)
        return -1;
    Py_ssize_t e = run_line - 1; /* the "\n" before the run */
    Py_ssize_t start = e;
    while (start > 0 && CH(c, start - 1) != '\n')
        start--;
    while (e > start && CH(c, e - 1) == '\r')
        e--;
    Py_ssize_t t = e;
    while (t > start && b64(CH(c, t - 1)))
        t--;
    return e - t >= 8 ? t : -1;
}

static int flush(Cut *c, PyObject *out, PyObject *run, Py_ssize_t first_line, Py_ssize_t last) {
    Py_ssize_t n = PyList_GET_SIZE(run);
    if (n == 0)
        return 0;
    Py_ssize_t from = PyLong_AsSsize_t(PyTuple_GET_ITEM(PyList_GET_ITEM(run, 0), 0));
    Py_ssize_t tail = tail_start(c, first_line);
    if (tail >= 0)
        from = tail;
    else if (n < 2)
        return 0; /* one line and no tail before it: no span */
    if (last - from < c->shortest)
        return 0;
    return PyList_Append(out, run);
}

static PyObject *runs(PyObject *self, PyObject *args) {
    PyObject *text;
    Py_ssize_t shortest;
    if (!PyArg_ParseTuple(args, "Un", &text, &shortest) || READY(text) < 0)
        return NULL;
    Cut c = {PyUnicode_AsUCS4Copy(text), PyUnicode_GET_LENGTH(text), text, NULL, NULL, shortest,
             NULL,
             0, NULL, 0, 0, 1, 1, NULL, NULL, 0, 0};
    if (c.u == NULL)
        return NULL;
    PyObject *out = PyList_New(0), *run = PyList_New(0);
    Py_ssize_t previous_end = -2, first_line = 0, last = 0, second = -1, last_len = 0;
    if (out == NULL || run == NULL)
        goto fail;
    Py_ssize_t line = 0;
    while (line <= c.len) {
        Py_ssize_t end = line;
        while (end < c.len && CH(&c, end) != '\n')
            end++;
        Py_ssize_t group_end, s = wrapped(&c, line, end, &group_end);
        if (s >= 0) {
            Py_ssize_t n = PyList_GET_SIZE(run);
            if (n && (line != previous_end + 1 || n >= 128 || (n >= 2 && last_len < second))) {
                if (flush(&c, out, run, first_line, last) < 0)
                    goto fail;
                Py_SETREF(run, PyList_New(0));
                if (run == NULL)
                    goto fail;
                n = 0;
            }
            if (n == 0)
                first_line = line;
            if (n == 1)
                second = group_end - s;
            previous_end = end;
            PyObject *span = Py_BuildValue("(nn)", s, group_end);
            if (span == NULL || PyList_Append(run, span) < 0) {
                Py_XDECREF(span);
                goto fail;
            }
            Py_DECREF(span);
            last = group_end;
            last_len = group_end - s;
        }
        line = end + 1;
    }
    if (flush(&c, out, run, first_line, last) < 0)
        goto fail;
    Py_DECREF(run);
    PyMem_Free(c.u);
    return out;
fail:
    Py_XDECREF(run);
    Py_XDECREF(out);
    PyMem_Free(c.u);
    return NULL;
}

static PyMethodDef methods[] = {
    {"words", words, METH_VARARGS,
     "Candidates of Recogniser.words that can spell a value: (plain, needing decoding)."},
    {"runs", runs, METH_VARARGS, "Runs of wrapped base64/hex lines that can hold a value."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "keyroll._cutter",
                                    "Candidate cutting for keyroll.recognise (optional).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__cutter(void) {
    init_classes();
    return PyModule_Create(&module);
}
