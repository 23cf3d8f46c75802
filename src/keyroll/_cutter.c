/* keyroll._cutter: the candidate cutting of `keyroll.recognise.Recogniser.words` in one pass.
 *
 * Optional accelerator (built by hatch_build.py when a C compiler is there): recognise.py
 * falls back to its regular expressions without it, and tests check that both cut exactly the
 * same candidates. Each function below ports one regular expression of recognise.py; the
 * comment above it names the expression. Python's `\s` on str is Py_UNICODE_ISSPACE.
 * Every input is hostile (any text, any argument): every index is checked against its
 * buffer, and tests/unit/scan/test_cutter_asan.py fuzzes the module under ASan and UBSan.
 *
 * words(text, shortest, ops, spaced_ops, spaced_min, windows, spaced, escapes, sizes,
 *       raw_sizes, tag_key, tags, all_tags, runs_min)
 *   -> (plain: set[str], special: set[str], runs: tuple[bytes, bytes, bytes] | None,
 *       pieced: list[str])
 *   Every candidate `Recogniser.words` would try, kept only when it can spell a recorded
 *   value: a candidate that needs decoding (newline, backslash, quote, percent or non-ASCII)
 *   from `shortest` characters, a plain one only when ops[len] is non-zero; one holding
 *   whitespace (only a value with spaces can be spelled so) from `spaced_min` characters when
 *   it needs decoding, else only when spaced_ops[len] is non-zero. `windows`: the
 *   (characters, words) of the values with spaces looked for in runs of words (`spaced`);
 *   `escapes`: the text holds "\\ " or "\\<tab>" (printf %q words are cut on its lines).
 *   Prefilters (each off when its argument is empty): `sizes` (byte sizes of every recorded
 *   value, as a 0/1 map) and `raw_sizes` (of the values not matched literally): a candidate
 *   that needs decoding is kept only when one of its spellings, decoded here as recognise.py
 *   does, has a recorded size (its raw one: a raw size) and, with `all_tags`, a recorded tag;
 *   `tags`: a plain candidate is kept only when one of its spellings has one of these tags
 *   (the values looked for in plain spellings). Tag maps are 65,536 bits, the SipHash key
 *   `tag_key` 16 bytes (keyroll.recognise_tag). `runs_min` > 0: also the text's
 *   whitespace-free runs of that many characters or more, as long_runs returns them.
 *   `pieced`: the lines holding a shell word quoted in pieces (recognise._pieced).
 * runs(text, shortest) -> list[list[tuple[int, int]]]
 *   The runs of wrapped base64/hex lines of `_block_candidates` (the base64 part of each
 *   line), only those whose candidate spans can reach `shortest` characters.
 * run_spans(text, shortest) -> list[tuple[int, int]]
 *   `_run_spans` of every run of `runs`, the spans of `shortest` characters or more.
 * blocks(texts, sizes, tag_key, all_tags) -> list[str]
 *   Of the candidates written across lines, those with a spelling (as `_sized_spellings`
 *   computes them) of a recorded size and, with `all_tags`, a recorded tag.
 * long_runs(text, minimum) -> (bytes, bytes, bytes)
 *   The UTF-8 of each whitespace-free run of `minimum` characters or more, each followed by
 *   "\n", and where each starts in those bytes and in the text (native int64 arrays).
 * siphash24(key, data) -> int
 *   SipHash-2-4 (tests check it against the reference vectors and the Python one).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <wchar.h>

typedef struct {
    Py_UCS4 *u; /* the text's characters, copied once (no per-character kind switch) */
    uint16_t *cls; /* `words`: each character's classes (see `classify`), or NULL */
    Py_ssize_t len;
    PyObject *text;
    PyObject *out;     /* plain candidates */
    PyObject *pieced;  /* `words`: the lines holding a shell word quoted in pieces */
    PyObject *special; /* candidates that need decoding */
    Py_ssize_t shortest;
    const unsigned char *ops;
    Py_ssize_t nops;
    const unsigned char *spaced_ops;
    Py_ssize_t nspaced_ops;
    Py_ssize_t spaced_min;
    Py_ssize_t floor; /* the shortest candidate `keep` may keep */
    /* whether the word or line being cut holds a character that needs decoding, or
     * whitespace: without, none of its candidates does (no per-candidate scan) */
    int ctx_full, ctx_white;
    /* the distinct spans kept so far (open addressing on their characters' hash): a span
     * seen again costs a hash and a compare, not a Python string */
    Py_ssize_t *seen;
    uint64_t *hashes;
    Py_ssize_t seen_cap, seen_len;
    /* the byte sizes of the recorded values (`sizes[n]` non-zero), or NULL: a candidate that
     * needs decoding is kept only when one of its spellings can have one (`plausible`) */
    const unsigned char *sizes, *raw_sizes;
    Py_ssize_t nsizes, nraw_sizes, min_size;
    /* the recognition tags of the values plain candidates may spell (a 65,536-bit map) and
     * their SipHash key, or NULL: a plain candidate is kept only when one of its spellings
     * has a tag in the map (`tagged`) */
    const unsigned char *tags, *all_tags; /* the plain values' tags, every version's */
    uint64_t k0, k1;
    /* the whitespace-free runs of `runs_min` characters or more (0: none), as `long_runs`
     * returns them: their UTF-8 bytes, and pairs (byte offset, character offset) */
    Py_ssize_t runs_min, run_used, run_cap, nruns, runs_cap;
    unsigned char *run_bytes;
    int64_t *run_starts;
    unsigned char *bytes;  /* a candidate's spelling as bytes (MAX_CANDIDATE) */
    Py_UCS4 *scratch;      /* a candidate's characters after the shell-quote replaces */
} Cut;

/* longer candidates that need decoding are not tried (recognise.py's _MAX_CANDIDATE) */
#define MAX_CANDIDATE 4096
#define TAG_BITS 65536

static Py_ssize_t put_utf8(int kind, const void *data, Py_ssize_t s, Py_ssize_t i,
                           unsigned char *out);

#define CH(c, i) ((c)->u[(i)])
#if PY_VERSION_HEX < 0x030C0000
#define READY(text) PyUnicode_READY(text)
#else
#define READY(text) 0
#endif

/* character classes of the ASCII characters (filled at import); anything above 127 is in
 * none but PIECE's, and is whitespace when Py_UNICODE_ISSPACE says so */
enum { ALPHABET = 1, PIECE_STOP = 2, B64 = 4, TRIMMED = 8, FULL = 16, WHITE = 32, QUOTES = 64,
       DQ = 128, SQ = 256, EQ = 512, COLON = 1024 };
static uint16_t classes[128];

static void fill(const char *chars, uint16_t bit) {
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
    fill("\"", DQ);
    fill("'", SQ);
    fill("=", EQ);
    fill(":", COLON);
}

/* the classes of each character of c->u into c->cls (`words`' loops test a bit, not a
 * character): an ASCII one's, else FULL and, when Python's str.isspace says so, WHITE */
static int classify(Cut *c) {
    c->cls = PyMem_Malloc((size_t)(c->len ? c->len : 1) * sizeof(uint16_t));
    if (c->cls == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < c->len; i++) {
        Py_UCS4 ch = c->u[i];
        c->cls[i] = ch < 128 ? classes[ch] : (uint16_t)(FULL | (Py_UNICODE_ISSPACE(ch) ? WHITE : 0));
    }
    return 0;
}

#define CLS(c, i) ((c)->cls[(i)])

static inline int has(Py_UCS4 ch, uint16_t bit) { return ch < 128 && (classes[ch] & bit); }
static inline int space(Py_UCS4 ch) { return ch < 128 ? classes[ch] & WHITE : Py_UNICODE_ISSPACE(ch); }
#define SPACE(ch) space(ch)
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

/* SipHash-2-4 (Aumasson and Bernstein, 2012), 64-bit output, of in[0:len] under (k0, k1):
 * the keyed prefilter tag of keyroll.recognise_tag (which has the same in Python, and whose
 * tests check both against the reference vectors). Not a digest: a match is then confirmed by
 * the recognition digest (HMAC-SHA256, computed by Python's hashlib). */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                             \
    do {                                                                                     \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                            \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                               \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                               \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                            \
    } while (0)

static uint64_t siphash24(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len) {
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    size_t full = len - len % 8;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = 0;
        for (int k = 7; k >= 0; k--)
            m = (m << 8) | in[i + (size_t)k];
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = ((uint64_t)len) << 56;
    for (size_t k = 0; k < len % 8; k++)
        b |= ((uint64_t)in[full + k]) << (8 * k);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static int tag_known(Cut *c, const unsigned char *data, Py_ssize_t n) {
    unsigned tag = (unsigned)(siphash24(c->k0, c->k1, data, (size_t)n) & (TAG_BITS - 1));
    return (c->tags[tag >> 3] >> (tag & 7)) & 1;
}

/* the value of a base64 or base64url character (both alphabets, as recognise.py decodes a
 * plain candidate holding "-" or "_" as base64url), or -1 */
static int b64_value(Py_UCS4 ch) {
    if (ch >= 'A' && ch <= 'Z')
        return (int)(ch - 'A');
    if (ch >= 'a' && ch <= 'z')
        return (int)(ch - 'a') + 26;
    if (ch >= '0' && ch <= '9')
        return (int)(ch - '0') + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

static int hex_value(Py_UCS4 ch) {
    if (ch >= '0' && ch <= '9')
        return (int)(ch - '0');
    if (ch >= 'a' && ch <= 'f')
        return (int)(ch - 'a') + 10;
    if (ch >= 'A' && ch <= 'F')
        return (int)(ch - 'A') + 10;
    return -1;
}

/* whether a plain candidate text[a:b] (ASCII, no escape) has a spelling whose tag is in the
 * map: as written, with "+" as a space, base64/base64url-decoded, hex-decoded; the spellings
 * `_PlainBatches.find` hashes (a few more: it decodes only at the lengths it looks for) */
static int tagged(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t n = b - a;
    if (n > MAX_CANDIDATE)
        return 1; /* never the case (plain candidates are as long as a spelling); let Python try */
    unsigned char *out = c->bytes;
    int plus = 0, is_b64 = n % 4 != 1, is_hex = n % 2 == 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = CH(c, a + i);
        if (ch > 127)
            return 1; /* not plain after all: let Python try */
        out[i] = (unsigned char)ch;
        plus |= ch == '+';
        if (is_b64 && b64_value(ch) < 0)
            is_b64 = 0;
        if (is_hex && hex_value(ch) < 0)
            is_hex = 0;
    }
    if (tag_known(c, out, n))
        return 1;
    if (plus) {
        for (Py_ssize_t i = 0; i < n; i++)
            if (out[i] == '+')
                out[i] = ' ';
        if (tag_known(c, out, n))
            return 1;
    }
    if (is_b64) { /* n characters: 3 bytes a quad, 1 or 2 from a last pair or triple */
        Py_ssize_t m = 0;
        uint32_t acc = 0;
        int bits = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            acc = (acc << 6) | (uint32_t)b64_value(CH(c, a + i));
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out[m++] = (unsigned char)(acc >> bits);
                acc &= (1u << bits) - 1;
            }
        }
        if (tag_known(c, out, m))
            return 1;
    }
    if (is_hex) {
        for (Py_ssize_t i = 0; i + 1 < n; i += 2)
            out[i / 2] = (unsigned char)(hex_value(CH(c, a + i)) * 16 + hex_value(CH(c, a + i + 1)));
        if (tag_known(c, out, n / 2))
            return 1;
    }
    return 0;
}

static void strip_equals(Cut *c, Py_ssize_t *a, Py_ssize_t *b);

static int sized(Cut *c, Py_ssize_t n) { return n >= 0 && n < c->nsizes && c->sizes[n]; }

/* a character's UTF-8 length (surrogateescape), or -1 for a lone surrogate it cannot encode */
static Py_ssize_t utf8_len(Py_UCS4 ch) {
    if (ch < 0x80)
        return 1;
    if (ch < 0x800)
        return 2;
    if (ch >= 0xD800 && ch <= 0xDFFF)
        return ch >= 0xDC80 && ch <= 0xDCFF ? 1 : -1;
    return ch < 0x10000 ? 3 : 4;
}

/* whether a spelling (bytes) of a candidate that needs decoding can be a recorded value: of a
 * recorded size and, with the map of every version's tags, of a recorded tag */
static int spelled(Cut *c, const unsigned char *data, Py_ssize_t n) {
    if (!sized(c, n))
        return 0;
    if (c->all_tags == NULL)
        return 1;
    unsigned tag = (unsigned)(siphash24(c->k0, c->k1, data, (size_t)n) & (TAG_BITS - 1));
    return (c->all_tags[tag >> 3] >> (tag & 7)) & 1;
}

/* chars[0:n] (no lone surrogate but surrogateescape's) as UTF-8 into c->bytes: its length */
static Py_ssize_t encode(Cut *c, const Py_UCS4 *chars, Py_ssize_t n) {
    return put_utf8(PyUnicode_4BYTE_KIND, chars, 0, n, c->bytes);
}

/* json.loads('"' + text[a:b] + '"') into c->scratch: its length, -1 when it raises, -2 when
 * unsure (a \u escape of a surrogate: Python decides) */
static Py_ssize_t json_decode(Cut *c, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t n = 0;
    for (Py_ssize_t i = a; i < b; i++) {
        Py_UCS4 ch = CH(c, i);
        if (ch == '"' || ch < 0x20)
            return -1; /* the string ends early (extra data) or holds a control character */
        if (ch != '\\') {
            c->scratch[n++] = ch;
            continue;
        }
        if (i + 1 >= b)
            return -1; /* the closing quote is escaped */
        Py_UCS4 e = CH(c, ++i);
        if (e == 'u') {
            if (i + 4 >= b)
                return -1;
            Py_UCS4 unit = 0;
            for (int k = 1; k <= 4; k++) {
                int v = hex_value(CH(c, i + k));
                if (v < 0)
                    return -1;
                unit = unit * 16 + (Py_UCS4)v;
            }
            if (unit >= 0xD800 && unit <= 0xDFFF)
                return -2;
            c->scratch[n++] = unit;
            i += 4;
        } else {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *at = e > 0 && e < 128 ? strchr(from, (int)e) : NULL;
            if (at == NULL)
                return -1;
            c->scratch[n++] = (Py_UCS4)(unsigned char)to[at - from];
        }
    }
    return n;
}

/* base64-decode text[a:b] (stripped of "=" at both ends, no "=" inside) as a2b_base64 does
 * without validation: characters outside the alphabet skipped, 3 bytes a quad, 1 or 2 from a
 * last pair or triple (a last single character dropped: Python raises there, so this only
 * tries more); `url`: "-" and "_" as "+" and "/" */
static Py_ssize_t base64_decode(Cut *c, Py_ssize_t a, Py_ssize_t b, int url) {
    Py_ssize_t m = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (Py_ssize_t i = a; i < b; i++) {
        Py_UCS4 ch = CH(c, i);
        if (!url && (ch == '-' || ch == '_'))
            continue;
        int v = b64_value(ch);
        if (v < 0)
            continue;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            c->bytes[m++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return m;
}

/* whether a candidate that needs decoding (backslash, quote, percent or non-ASCII; one line)
 * has a spelling that can be a recorded value. Each spelling `_sized_spellings` tries is
 * computed here exactly as Python does (or the candidate is kept when unsure: a lone
 * surrogate, a percent-encoded byte above 127, an "=" inside base64, whose meaning differs
 * between Python versions), and kept when it has a recorded size and, with tag maps, a
 * recorded tag: the raw spelling only for the values not matched literally (`raw_sizes`, the
 * plain tags), the decoded ones for every version (`sizes`, every version's tags). */
static int plausible(Cut *c, Py_ssize_t a, Py_ssize_t b, int literal) {
    Py_ssize_t n = b - a;
    int backslash = 0, quote = 0, percent = 0, plus = 0, dash = 0, inner_pad = 0;
    for (Py_ssize_t i = a; i < b; i++) {
        Py_UCS4 ch = CH(c, i);
        if (utf8_len(ch) < 0)
            return 1; /* a lone surrogate: let Python decide */
        backslash |= ch == '\\';
        quote |= ch == '\'';
        percent |= ch == '%';
        plus |= ch == '+';
        dash |= ch == '-' || ch == '_';
    }
    Py_ssize_t size = encode(c, c->u + a, n);
    if (!literal ? spelled(c, c->bytes, size)
                 : size < c->nraw_sizes && c->raw_sizes[size]
                       && (c->tags == NULL || tag_known(c, c->bytes, size)))
        return 1; /* as written (`literal`: in the text, where the caller's literal matcher
                   * finds the values it reads, so only the others' sizes and tags count) */
    if (plus) { /* "+" as spaces: unquote_plus without "%", and `_sized_spellings`' own */
        for (Py_ssize_t k = 0; k < size; k++)
            if (c->bytes[k] == '+')
                c->bytes[k] = ' ';
        if (spelled(c, c->bytes, size))
            return 1;
    }
    Py_ssize_t sa = a, sb = b; /* strip("=") */
    strip_equals(c, &sa, &sb);
    Py_ssize_t chars = sb - sa;
    for (Py_ssize_t i = sa; i < sb; i++)
        inner_pad |= CH(c, i) == '=';
    if (!backslash && !quote && !percent) { /* `_sized_spellings`' plain branch */
        if (chars >= 4 && chars % 4 != 1 && sized(c, chars * 3 / 4)) {
            if (inner_pad)
                return 1;
            for (int url = 0; url < 2; url++) {
                Py_ssize_t m = base64_decode(c, sa, sb, url);
                if (spelled(c, c->bytes, m))
                    return 1;
            }
        }
        if (n % 2 == 0 && sized(c, n / 2)) { /* bytes.fromhex (fails on non-ASCII) */
            int digits = 1, white = 0;
            for (Py_ssize_t i = a; i < b && digits; i++) {
                Py_UCS4 ch = CH(c, i);
                if (ch < 128 && (classes[ch] & WHITE))
                    white = 1;
                else if (hex_value(ch) < 0)
                    digits = 0;
            }
            if (digits && white)
                return 1; /* whitespace between the pairs: let Python decide */
            if (digits) {
                for (Py_ssize_t i = a; i + 1 < b; i += 2)
                    c->bytes[(i - a) / 2] = (unsigned char)(hex_value(CH(c, i)) * 16
                                                            + hex_value(CH(c, i + 1)));
                if (spelled(c, c->bytes, n / 2))
                    return 1;
            }
        }
        return 0;
    }
    if (backslash) {
        Py_ssize_t m = 0; /* re.sub(r"\\(.)", r"\1") */
        for (Py_ssize_t i = a; i < b; i++) {
            if (CH(c, i) == '\\' && i + 1 < b && CH(c, i + 1) != '\n')
                i++;
            c->scratch[m++] = CH(c, i);
        }
        if (spelled(c, c->bytes, encode(c, c->scratch, m)))
            return 1;
        Py_ssize_t json = json_decode(c, a, b);
        if (json == -2 || (json >= 0 && spelled(c, c->bytes, encode(c, c->scratch, json))))
            return 1;
    }
    if (percent) { /* unquote, and unquote_plus ("+" as a space first) */
        for (int with_plus = 0; with_plus <= plus; with_plus++) {
            Py_ssize_t m = 0;
            for (Py_ssize_t i = a; i < b; i++) {
                Py_UCS4 ch = CH(c, i);
                int hi = ch == '%' && i + 2 < b ? hex_value(CH(c, i + 1)) : -1;
                int lo = hi >= 0 ? hex_value(CH(c, i + 2)) : -1;
                if (lo >= 0) {
                    if (hi >= 8)
                        return 1; /* a byte of a UTF-8 sequence (or U+FFFD): Python decides */
                    c->bytes[m++] = (unsigned char)(hi * 16 + lo);
                    i += 2;
                } else {
                    Py_UCS4 one = with_plus && ch == '+' ? ' ' : ch;
                    m += put_utf8(PyUnicode_4BYTE_KIND, &one, 0, 1, c->bytes + m);
                }
            }
            if (spelled(c, c->bytes, m))
                return 1;
        }
    }
    if (quote) { /* .replace("'\\''", "'").replace("'\"'\"'", "'") */
        Py_ssize_t m = 0;
        for (Py_ssize_t i = a; i < b; i++) {
            if (i + 3 < b && CH(c, i) == '\'' && CH(c, i + 1) == '\\' && CH(c, i + 2) == '\''
                && CH(c, i + 3) == '\'') {
                c->scratch[m++] = '\'';
                i += 3;
            } else {
                c->scratch[m++] = CH(c, i);
            }
        }
        Py_ssize_t k = 0;
        for (Py_ssize_t i = 0; i < m; i++) {
            if (i + 4 < m && c->scratch[i] == '\'' && c->scratch[i + 1] == '"'
                && c->scratch[i + 2] == '\'' && c->scratch[i + 3] == '"'
                && c->scratch[i + 4] == '\'') {
                c->scratch[k++] = '\'';
                i += 4;
            } else {
                c->scratch[k++] = c->scratch[i];
            }
        }
        if (spelled(c, c->bytes, encode(c, c->scratch, k)))
            return 1;
    }
    if (c->min_size < 0)
        return 0;
    if (chars >= 4 && c->min_size <= (chars + 3) * 3 / 4) {
        if (inner_pad)
            return 1; /* may stop at it, or skip it, by Python version: let Python decide */
        for (int url = 0; url <= dash; url++) {
            Py_ssize_t m = base64_decode(c, sa, sb, url);
            if (spelled(c, c->bytes, m))
                return 1;
        }
    }
    return 0; /* hex: bytes.fromhex fails on a backslash, quote or percent */
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
        uint16_t seen = 0;
        for (Py_ssize_t i = a; i < b && (seen & (FULL | WHITE)) != (FULL | WHITE); i++)
            seen |= CLS(c, i);
        full = (seen & FULL) != 0;
        white = (seen & WHITE) != 0;
    }
    int wanted = white ? (full ? n >= c->spaced_min : spaced_len)
                       : (full ? n >= c->shortest : plain_len);
    if (!wanted)
        return 0;
    if (full ? c->sizes != NULL && (n > MAX_CANDIDATE || !plausible(c, a, b, 1))
             : c->tags != NULL && !tagged(c, a, b))
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

static void strip_class(Cut *c, Py_ssize_t *a, Py_ssize_t *b, uint16_t bit) {
    while (*a < *b && (CLS(c, *a) & bit))
        (*a)++;
    while (*b > *a && (CLS(c, *b - 1) & bit))
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
    if (b - a < c->floor)
        return 0; /* too short for every length kept (stripping only shortens) */
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

/* maximal runs of a class: _ALPHABET.findall (characters with one of `any`), _PIECE.findall
 * (characters with none of `none`) */
static int class_runs(Cut *c, Py_ssize_t a, Py_ssize_t b, uint16_t any, uint16_t none) {
#define IN_CLASS(i) (any ? (CLS(c, (i)) & any) != 0 : (CLS(c, (i)) & none) == 0)
    Py_ssize_t i = a;
    while (i < b) {
        if (!IN_CLASS(i)) {
            i++;
            continue;
        }
        Py_ssize_t s = i;
        while (i < b && IN_CLASS(i))
            i++;
#undef IN_CLASS
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
                while (s < e && (CLS(c, s) & WHITE))
                    s++;
                while (e > s && (CLS(c, e - 1) & WHITE))
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
            if ((CLS(c, u) & WHITE) || ch == ':' || ch == '/' || ch == '@')
                break;
            u++;
        }
        if (u >= b || CH(c, u) != ':') {
            i++;
            continue;
        }
        Py_ssize_t s = u + 1, e = s, at = -1;
        if (!last) {
            while (e < b && !(CLS(c, e) & WHITE) && CH(c, e) != '@')
                e++;
            if (e > s && e < b && CH(c, e) == '@')
                at = e;
        } else {
            while (e < b && !(CLS(c, e) & WHITE))
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
    uint16_t seen = 0;
    for (Py_ssize_t i = a; i < b; i++)
        seen |= CLS(c, i);
    int dq = (seen & DQ) != 0, sq = (seen & SQ) != 0, eq = (seen & EQ) != 0;
    int colon = (seen & COLON) != 0;
    c->ctx_full = (seen & FULL) != 0;
    c->ctx_white = (seen & WHITE) != 0;
    if (emit(c, a, b) < 0 || class_runs(c, a, b, ALPHABET, 0) < 0
        || class_runs(c, a, b, 0, WHITE | PIECE_STOP) < 0
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
            if (CLS(c, q) & WHITE)
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

/* append text[s:i] (a whitespace-free run) to the runs; -1 out of memory */
static int add_run(Cut *c, Py_ssize_t s, Py_ssize_t i) {
    if ((i - s) > (PY_SSIZE_T_MAX - 1 - c->run_used) / 4) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = c->run_used + 4 * (i - s) + 1;
    if (need > c->run_cap) {
        Py_ssize_t grown = c->run_cap ? c->run_cap : 4096;
        while (grown < need)
            grown = grown > PY_SSIZE_T_MAX / 2 ? need : 2 * grown;
        unsigned char *bigger = PyMem_Realloc(c->run_bytes, (size_t)grown);
        if (bigger == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->run_bytes = bigger;
        c->run_cap = grown;
    }
    if (c->nruns == c->runs_cap) {
        Py_ssize_t grown = c->runs_cap ? 2 * c->runs_cap : 256;
        int64_t *bigger = PyMem_Realloc(c->run_starts, (size_t)grown * 2 * sizeof(int64_t));
        if (bigger == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->run_starts = bigger;
        c->runs_cap = grown;
    }
    c->run_starts[2 * c->nruns] = (int64_t)c->run_used;
    c->run_starts[2 * c->nruns + 1] = (int64_t)s;
    c->nruns++;
    c->run_used += put_utf8(PyUnicode_4BYTE_KIND, c->u, s, i, c->run_bytes + c->run_used);
    c->run_bytes[c->run_used++] = '\n';
    return 0;
}

/* (bytes, byte offsets, character offsets) of the runs (see long_runs) */
static PyObject *runs_result(Cut *c) {
    PyObject *result = NULL;
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)c->run_bytes, c->run_used);
    PyObject *in_bytes = NULL, *in_text = NULL;
    if (bytes != NULL) {
        in_bytes = PyBytes_FromStringAndSize(NULL, c->nruns * (Py_ssize_t)sizeof(int64_t));
        in_text = PyBytes_FromStringAndSize(NULL, c->nruns * (Py_ssize_t)sizeof(int64_t));
    }
    if (in_bytes != NULL && in_text != NULL) {
        int64_t *b = (int64_t *)PyBytes_AS_STRING(in_bytes);
        int64_t *t = (int64_t *)PyBytes_AS_STRING(in_text);
        for (Py_ssize_t k = 0; k < c->nruns; k++) {
            b[k] = c->run_starts[2 * k];
            t[k] = c->run_starts[2 * k + 1];
        }
        result = PyTuple_Pack(3, bytes, in_bytes, in_text);
    }
    Py_XDECREF(bytes);
    Py_XDECREF(in_bytes);
    Py_XDECREF(in_text);
    return result;
}

static void free_cut(Cut *c) {
    PyMem_Free(c->run_bytes);
    PyMem_Free(c->run_starts);
    PyMem_Free(c->bytes);
    PyMem_Free(c->scratch);
    PyMem_Free(c->cls);
    PyMem_Free(c->u);
    PyMem_Free(c->seen);
    PyMem_Free(c->hashes);
}

static PyObject *words(PyObject *self, PyObject *args) {
    PyObject *text, *windows;
    Py_ssize_t shortest, spaced_min, bounds_cap = 0, *bounds = NULL;
    Py_buffer ops, spaced_ops, sizes, raw_sizes, tag_key, tags, all_tags;
    int spaced, escapes;
    Py_ssize_t runs_min;
    if (!PyArg_ParseTuple(args, "Uny*y*nO!ppy*y*y*y*y*n", &text, &shortest, &ops, &spaced_ops,
                          &spaced_min, &PyTuple_Type, &windows, &spaced, &escapes, &sizes,
                          &raw_sizes, &tag_key, &tags, &all_tags, &runs_min))
        return NULL;
    Py_ssize_t nwin = PyTuple_GET_SIZE(windows);
    Py_ssize_t *width = PyMem_Calloc(2 * (nwin ? nwin : 1), sizeof(Py_ssize_t));
    Cut c = {.text = text, .shortest = shortest < 1 ? 1 : shortest,
             .ops = (const unsigned char *)ops.buf, .nops = ops.len,
             .spaced_ops = (const unsigned char *)spaced_ops.buf, .nspaced_ops = spaced_ops.len,
             .spaced_min = spaced_min, .ctx_full = 1, .ctx_white = 1, .min_size = -1};
    if (width == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    if (READY(text) < 0)
        goto fail;
    c.runs_min = runs_min;
    c.floor = c.shortest < c.spaced_min ? c.shortest : c.spaced_min;
    for (Py_ssize_t n = 1; n < c.floor; n++) {
        if ((n < c.nops && c.ops[n]) || (n < c.nspaced_ops && c.spaced_ops[n])) {
            c.floor = n;
            break;
        }
    }
    if ((tags.len != 0 && tags.len != TAG_BITS / 8) || (all_tags.len != 0
        && all_tags.len != TAG_BITS / 8) || ((tags.len || all_tags.len) && tag_key.len != 16)) {
        PyErr_SetString(PyExc_ValueError, "tags must be a 65,536-bit map and its key 16 bytes");
        goto fail;
    }
    if (sizes.len > 0) {
        c.sizes = (const unsigned char *)sizes.buf;
        c.nsizes = sizes.len;
        c.raw_sizes = (const unsigned char *)raw_sizes.buf;
        c.nraw_sizes = raw_sizes.len;
        for (Py_ssize_t n = 0; n < sizes.len && c.min_size < 0; n++)
            if (c.sizes[n])
                c.min_size = n;
    }
    if (tags.len > 0 || all_tags.len > 0) {
        const unsigned char *k = (const unsigned char *)tag_key.buf;
        for (int i = 7; i >= 0; i--) {
            c.k0 = (c.k0 << 8) | k[i];
            c.k1 = (c.k1 << 8) | k[8 + i];
        }
        c.tags = tags.len > 0 ? (const unsigned char *)tags.buf : NULL;
        c.all_tags = all_tags.len > 0 ? (const unsigned char *)all_tags.buf : NULL;
    }
    if (c.sizes != NULL || c.tags != NULL) {
        c.bytes = PyMem_Malloc(4 * MAX_CANDIDATE + 4);
        c.scratch = PyMem_Malloc(MAX_CANDIDATE * sizeof(Py_UCS4));
        if (c.bytes == NULL || c.scratch == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    c.len = PyUnicode_GET_LENGTH(text);
    if (c.len >= (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "text too long for the C cutter");
        goto fail;
    }
    c.u = PyUnicode_AsUCS4Copy(text);
    if (c.u == NULL || classify(&c) < 0)
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
    c.pieced = PyList_New(0);
    if (c.out == NULL || c.special == NULL || c.pieced == NULL)
        goto fail;
    Py_ssize_t line = 0;
    while (line <= c.len) {
        Py_ssize_t end = find_char(&c, line, c.len, '\n');
        /* the words of the line: \S{shortest,} are cut further; every word start and end is
         * kept for the runs of words */
        Py_ssize_t i = line, nwords = 0;
        while (i < end) {
            if (CLS(&c, i) & WHITE) {
                i++;
                continue;
            }
            Py_ssize_t s = i;
            while (i < end && !(CLS(&c, i) & WHITE))
                i++;
            if (i - s >= c.shortest && word(&c, s, i) < 0)
                goto fail;
            if (c.runs_min > 0 && i - s >= c.runs_min && add_run(&c, s, i) < 0)
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
        /* a line holding a shell word quoted in pieces ('a'"'"'b', 'a'\''b): recognise.py's
         * _pieced, the lines its shell-word pass splits */
        if (find_char(&c, line, end, '\'') < end) {
            int found = 0;
            for (Py_ssize_t k = find_char(&c, line, end, '\''); k + 3 < end && !found;
                 k = find_char(&c, k + 1, end, '\'')) {
                found = (CH(&c, k + 1) == '\\' && CH(&c, k + 2) == '\'' && CH(&c, k + 3) == '\'')
                        || (k + 4 < end && CH(&c, k + 1) == '"' && CH(&c, k + 2) == '\''
                            && CH(&c, k + 3) == '"' && CH(&c, k + 4) == '\'');
            }
            if (found) {
                PyObject *whole = PyUnicode_Substring(text, line, end);
                if (whole == NULL || PyList_Append(c.pieced, whole) < 0) {
                    Py_XDECREF(whole);
                    goto fail;
                }
                Py_DECREF(whole);
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
    PyObject *found_runs = c.runs_min > 0 ? runs_result(&c) : (Py_INCREF(Py_None), Py_None);
    PyMem_Free(bounds);
    free_cut(&c);
    PyMem_Free(width);
    PyBuffer_Release(&ops);
    PyBuffer_Release(&spaced_ops);
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&raw_sizes);
    PyBuffer_Release(&tag_key);
    PyBuffer_Release(&tags);
    PyBuffer_Release(&all_tags);
    PyObject *all = found_runs == NULL ? NULL
                                       : PyTuple_Pack(4, c.out, c.special, found_runs, c.pieced);
    Py_XDECREF(found_runs);
    Py_DECREF(c.out);
    Py_DECREF(c.special);
    Py_DECREF(c.pieced);
    return all;
fail:
    free_cut(&c);
    PyMem_Free(bounds);
    PyMem_Free(width);
    PyBuffer_Release(&ops);
    PyBuffer_Release(&spaced_ops);
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&raw_sizes);
    PyBuffer_Release(&tag_key);
    PyBuffer_Release(&tags);
    PyBuffer_Release(&all_tags);
    Py_XDECREF(c.out);
    Py_XDECREF(c.special);
    Py_XDECREF(c.pieced);
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
    Cut c = {.u = PyUnicode_AsUCS4Copy(text), .len = PyUnicode_GET_LENGTH(text), .text = text,
             .shortest = shortest, .ctx_full = 1, .ctx_white = 1, .min_size = -1};
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

/* append (a, b) to out when it spans `shortest` characters or more; -1 out of memory */
static int add_span(PyObject *out, Py_ssize_t a, Py_ssize_t b, Py_ssize_t shortest) {
    if (b - a < shortest)
        return 0;
    PyObject *span = Py_BuildValue("(nn)", a, b);
    if (span == NULL)
        return -1;
    int failed = PyList_Append(out, span);
    Py_DECREF(span);
    return failed;
}

/* run_spans(text, shortest) -> list[tuple[int, int]]: recognise.py's `_run_spans` of every
 * run of `runs`, those of `shortest` characters or more, in its order: from the first line
 * (or after a KEY= on it, or from the tail of the line before) to every later line, and from
 * every middle line to the last. */
static PyObject *run_spans(PyObject *self, PyObject *args) {
    PyObject *text;
    Py_ssize_t shortest;
    if (!PyArg_ParseTuple(args, "Un", &text, &shortest))
        return NULL;
    PyObject *all = runs(self, args);
    if (all == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    Py_UCS4 *u = out == NULL ? NULL : PyUnicode_AsUCS4Copy(text);
    Py_ssize_t *ends = NULL;
    if (u == NULL)
        goto fail;
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(all); r++) {
        PyObject *run = PyList_GET_ITEM(all, r);
        Py_ssize_t n = PyList_GET_SIZE(run);
        if (n == 0)
            continue;
        PyMem_Free(ends);
        ends = PyMem_Malloc(2 * (size_t)n * sizeof(Py_ssize_t));
        if (ends == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t k = 0; k < n; k++) { /* (start, end) of each line's base64 */
            PyObject *pair = PyList_GET_ITEM(run, k);
            ends[2 * k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
            ends[2 * k + 1] = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 1));
        }
        Py_ssize_t s0 = ends[0], e0 = ends[1], starts[3], nstarts = 0;
        if (n >= 2)
            starts[nstarts++] = s0;
        Py_ssize_t head = e0; /* head.rstrip("=").find("=") */
        while (head > s0 && u[head - 1] == '=')
            head--;
        Py_ssize_t inner = -1;
        for (Py_ssize_t k = s0; k < head; k++) {
            if (u[k] == '=') {
                inner = k - s0;
                break;
            }
        }
        if (inner > 0 && n >= 2)
            starts[nstarts++] = s0 + inner + 1;
        Py_ssize_t line_start = s0; /* text.rfind("\n", 0, s0) + 1 */
        while (line_start > 0 && u[line_start - 1] != '\n')
            line_start--;
        if (line_start > 0) { /* the line before ends with 8+ base64 characters */
            Py_ssize_t offset = line_start - 1;
            while (offset > 0 && u[offset - 1] != '\n')
                offset--;
            Py_ssize_t end = line_start - 1;
            while (end > offset && u[end - 1] == '\r')
                end--;
            Py_ssize_t kept = end;
            while (kept > offset && b64(u[kept - 1]))
                kept--;
            if (end - kept >= 8) {
                if (add_span(out, kept, e0, shortest) < 0)
                    goto fail;
                starts[nstarts++] = kept;
            }
        }
        for (Py_ssize_t k = 0; k < nstarts; k++)
            for (Py_ssize_t j = 1; j < n; j++)
                if (add_span(out, starts[k], ends[2 * j + 1], shortest) < 0)
                    goto fail;
        for (Py_ssize_t j = 1; j + 1 < n; j++)
            if (add_span(out, ends[2 * j], ends[2 * (n - 1) + 1], shortest) < 0)
                goto fail;
    }
    PyMem_Free(ends);
    PyMem_Free(u);
    Py_DECREF(all);
    return out;
fail:
    PyMem_Free(ends);
    PyMem_Free(u);
    Py_DECREF(all);
    Py_XDECREF(out);
    return NULL;
}

/* append text[s:i] to out as UTF-8 (surrogateescape; any other lone surrogate as 3 bytes,
 * which no spelling has); out has room for 4 bytes a character */
static Py_ssize_t put_utf8(int kind, const void *data, Py_ssize_t s, Py_ssize_t i,
                           unsigned char *out) {
    Py_ssize_t used = 0;
    for (Py_ssize_t k = s; k < i; k++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, k);
        if (ch < 0x80) {
            out[used++] = (unsigned char)ch;
        } else if (ch < 0x800) {
            out[used++] = (unsigned char)(0xC0 | (ch >> 6));
            out[used++] = (unsigned char)(0x80 | (ch & 0x3F));
        } else if (ch >= 0xDC80 && ch <= 0xDCFF) {
            out[used++] = (unsigned char)(ch - 0xDC00); /* surrogateescape */
        } else if (ch < 0x10000) {
            out[used++] = (unsigned char)(0xE0 | (ch >> 12));
            out[used++] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
            out[used++] = (unsigned char)(0x80 | (ch & 0x3F));
        } else {
            out[used++] = (unsigned char)(0xF0 | (ch >> 18));
            out[used++] = (unsigned char)(0x80 | ((ch >> 12) & 0x3F));
            out[used++] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
            out[used++] = (unsigned char)(0x80 | (ch & 0x3F));
        }
    }
    return used;
}

/* long_runs(text, minimum): the UTF-8 bytes of each whitespace-free run of `minimum`
 * characters or more, each followed by "\n", and two arrays of native int64: where each run
 * starts in those bytes, and in the text (characters). A spelling without whitespace lies
 * inside such a run. (`words` returns the same when given a `runs_min`.) */
static PyObject *long_runs(PyObject *self, PyObject *args) {
    PyObject *text;
    Py_ssize_t minimum;
    if (!PyArg_ParseTuple(args, "Un", &text, &minimum) || READY(text) < 0)
        return NULL;
    Cut c = {.u = PyUnicode_AsUCS4Copy(text), .len = PyUnicode_GET_LENGTH(text), .text = text,
             .shortest = 1, .ctx_full = 1, .ctx_white = 1, .min_size = -1,
             .runs_min = minimum < 1 ? 1 : minimum};
    if (c.u == NULL)
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t i = 0;
    while (i < c.len) {
        if (SPACE(CH(&c, i))) {
            i++;
            continue;
        }
        Py_ssize_t s = i;
        while (i < c.len && !SPACE(CH(&c, i)))
            i++;
        if (i - s >= c.runs_min && add_run(&c, s, i) < 0)
            goto done;
    }
    result = runs_result(&c);
done:
    free_cut(&c);
    return result;
}

/* blocks(texts, sizes, tag_key, all_tags) -> list[str]: of the candidates written across
 * lines (`_block_candidates`: PEM blocks, wrapped base64/hex), those with a spelling that can
 * be a recorded value, as `_sized_spellings`' block branch computes them: the text, its lines
 * stripped and joined by newlines (with and without a last one), and the base64 of its wrapped
 * lines joined (each line's base64 part), tried in every one-line spelling. Longer than
 * MAX_CANDIDATE: dropped (recognise.py does not try them). */
static PyObject *blocks(PyObject *self, PyObject *args) {
    PyObject *texts;
    Py_buffer sizes, tag_key, all_tags;
    if (!PyArg_ParseTuple(args, "O!y*y*y*", &PyList_Type, &texts, &sizes, &tag_key, &all_tags))
        return NULL;
    PyObject *kept = NULL;
    Cut c = {.ctx_full = 1, .ctx_white = 1, .min_size = -1};
    Py_UCS4 *joined = NULL;
    if (all_tags.len != 0 && (all_tags.len != TAG_BITS / 8 || tag_key.len != 16)) {
        PyErr_SetString(PyExc_ValueError, "tags must be a 65,536-bit map and its key 16 bytes");
        goto done;
    }
    c.sizes = (const unsigned char *)sizes.buf;
    c.nsizes = sizes.len;
    for (Py_ssize_t n = 0; n < sizes.len && c.min_size < 0; n++)
        if (c.sizes[n])
            c.min_size = n;
    if (all_tags.len > 0) {
        const unsigned char *k = (const unsigned char *)tag_key.buf;
        for (int i = 7; i >= 0; i--) {
            c.k0 = (c.k0 << 8) | k[i];
            c.k1 = (c.k1 << 8) | k[8 + i];
        }
        c.all_tags = (const unsigned char *)all_tags.buf;
    }
    c.bytes = PyMem_Malloc(4 * MAX_CANDIDATE + 8);
    c.scratch = PyMem_Malloc((MAX_CANDIDATE + 1) * sizeof(Py_UCS4));
    joined = PyMem_Malloc((MAX_CANDIDATE + 1) * sizeof(Py_UCS4));
    kept = PyList_New(0);
    if (c.bytes == NULL || c.scratch == NULL || joined == NULL || kept == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t t = 0; t < PyList_GET_SIZE(texts); t++) {
        PyObject *text = PyList_GET_ITEM(texts, t);
        if (!PyUnicode_Check(text)) {
            PyErr_SetString(PyExc_TypeError, "blocks are str");
            goto fail;
        }
        if (READY(text) < 0)
            goto fail;
        Py_ssize_t n = PyUnicode_GET_LENGTH(text);
        if (n > MAX_CANDIDATE)
            continue;
        int kind = PyUnicode_KIND(text), keep_it = 1;
        const void *data = PyUnicode_DATA(text);
        for (Py_ssize_t i = 0; i < n && keep_it; i++) /* no "\n": not a block, Python decides */
            keep_it = PyUnicode_READ(kind, data, i) != '\n';
        for (Py_ssize_t i = 0; i < n && !keep_it; i++)
            keep_it = utf8_len(PyUnicode_READ(kind, data, i)) < 0; /* a lone surrogate */
        if (!keep_it) /* as written */
            keep_it = spelled(&c, c.bytes, put_utf8(kind, data, 0, n, c.bytes));
        /* its lines (str.splitlines), stripped, joined by "\n" into scratch; their base64
         * parts (or the lines, when not wrapped base64) joined into `joined` */
        Py_ssize_t m = 0, j = 0, i = 0, lines = 0;
        while (!keep_it && i < n) {
            Py_ssize_t end = i;
            while (end < n && !Py_UNICODE_ISLINEBREAK(PyUnicode_READ(kind, data, end)))
                end++;
            Py_ssize_t s = i, e = end;
            while (s < e && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, s)))
                s++;
            while (e > s && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, e - 1)))
                e--;
            if (lines++ > 0)
                c.scratch[m++] = '\n';
            for (Py_ssize_t k = s; k < e; k++)
                c.scratch[m++] = PyUnicode_READ(kind, data, k);
            /* _WRAPPED_LINE.fullmatch of the stripped line: its base64 part, then quotes */
            Py_ssize_t g = s;
            while (g < e && has(PyUnicode_READ(kind, data, g), B64))
                g++;
            Py_ssize_t q = g;
            while (q < e && has(PyUnicode_READ(kind, data, q), QUOTES))
                q++;
            Py_ssize_t part = g - s >= 4 && q == e ? g : e;
            for (Py_ssize_t k = s; k < part; k++)
                joined[j++] = PyUnicode_READ(kind, data, k);
            if (end >= n)
                break;
            Py_UCS4 br = PyUnicode_READ(kind, data, end);
            i = end + 1 + (br == '\r' && end + 1 < n && PyUnicode_READ(kind, data, end + 1) == '\n');
        }
        if (!keep_it) { /* the stripped lines, with and without a last newline */
            Py_ssize_t size = put_utf8(PyUnicode_4BYTE_KIND, c.scratch, 0, m, c.bytes);
            keep_it = spelled(&c, c.bytes, size);
            if (!keep_it) {
                c.bytes[size] = '\n';
                keep_it = spelled(&c, c.bytes, size + 1);
            }
        }
        if (!keep_it) { /* the joined base64 (never the text: that has a newline), one line */
            c.u = joined;
            c.len = j;
            keep_it = plausible(&c, 0, j, 0);
            c.u = NULL;
        }
        if (keep_it && PyList_Append(kept, text) < 0)
            goto fail;
    }
    goto done;
fail:
    Py_CLEAR(kept);
done:
    PyMem_Free(c.bytes);
    PyMem_Free(c.scratch);
    PyMem_Free(joined);
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&tag_key);
    PyBuffer_Release(&all_tags);
    return kept;
}

static PyObject *siphash(PyObject *self, PyObject *args) {
    Py_buffer key, data;
    if (!PyArg_ParseTuple(args, "y*y*", &key, &data))
        return NULL;
    PyObject *out = NULL;
    if (key.len != 16) {
        PyErr_SetString(PyExc_ValueError, "a SipHash key is 16 bytes");
    } else {
        const unsigned char *k = (const unsigned char *)key.buf;
        uint64_t k0 = 0, k1 = 0;
        for (int i = 7; i >= 0; i--) {
            k0 = (k0 << 8) | k[i];
            k1 = (k1 << 8) | k[8 + i];
        }
        out = PyLong_FromUnsignedLongLong(
            siphash24(k0, k1, (const unsigned char *)data.buf, (size_t)data.len));
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return out;
}

static PyMethodDef methods[] = {
    {"siphash24", siphash, METH_VARARGS, "SipHash-2-4 of data under a 16-byte key (tests)."},
    {"blocks", blocks, METH_VARARGS,
     "Of the candidates across lines, those with a spelling of a recorded size and tag."},
    {"long_runs", long_runs, METH_VARARGS,
     "UTF-8 of the whitespace-free runs of a minimum length, and where each starts."},
    {"words", words, METH_VARARGS,
     "Candidates of Recogniser.words that can spell a value: (plain, needing decoding)."},
    {"runs", runs, METH_VARARGS, "Runs of wrapped base64/hex lines that can hold a value."},
    {"run_spans", run_spans, METH_VARARGS,
     "The candidate spans of the runs of wrapped lines, of a minimum length."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "keyroll._cutter",
                                    "Candidate cutting for keyroll.recognise (optional).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__cutter(void) {
    init_classes();
    return PyModule_Create(&module);
}
