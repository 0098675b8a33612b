/* pm-deliver text: Canvas message HTML to plain text; the webhook, Twilio and SendGrid bodies. */
#include "deliver.h"

#include "json_writer.h"
#include "utf8.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TWILIO_BODY_MAX 1600 /* characters (code points) Twilio takes in one Body */
#define LIST_MAX        16   /* nesting of <ul>/<ol> whose kind and counter are remembered */
#define HREF_MAX        2048 /* longer link targets are not appended to the text */
#define ENTITY_NAME_MAX 32
#define CP_REPLACEMENT  0xfffdu

/* ---- growing output buffer ---- */

struct text_buf {
    char *p;
    size_t len, cap;
    int oom; /* set once an allocation failed; later writes are dropped */
};

static int text_buf_reserve(struct text_buf *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->oom)
        return -1;
    if (more < b->cap - b->len)
        return 0;
    if (more > SIZE_MAX / 2 - b->len) {
        b->oom = 1;
        return -1;
    }
    cap = b->cap ? b->cap : 64;
    while (cap - b->len <= more)
        cap *= 2;
    p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void text_buf_put(struct text_buf *b, const char *s, size_t n)
{
    if (text_buf_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void text_buf_putc(struct text_buf *b, char c)
{
    text_buf_put(b, &c, 1);
}

/* Appends @p cp as UTF-8 (the caller has made sure it is a Unicode scalar value). */
static void text_buf_put_cp(struct text_buf *b, uint32_t cp)
{
    char u[4];

    if (cp < 0x80) {
        u[0] = (char)cp;
        text_buf_put(b, u, 1);
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        text_buf_put(b, u, 2);
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        text_buf_put(b, u, 3);
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        text_buf_put(b, u, 4);
    }
}

/* Hands the buffer over as a malloc'd string ("" when nothing was written). */
static char *text_buf_take(struct text_buf *b)
{
    char *s;

    if (b->oom) {
        free(b->p);
        return NULL;
    }
    if (!b->p)
        return strdup("");
    s = b->p;
    b->p = NULL; /* owned by the caller now */
    return s;
}

/* ---- UTF-8 ---- */

/* Bytes taken by the first @p max characters of @p s: a valid UTF-8 sequence is one character,
 * as is each byte that is not UTF-8 (the way Twilio and the sandbox count). */
static size_t utf8_prefix(const char *s, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, chars = 0;
    uint32_t cp;

    while (i < len && chars < max) {
        size_t n = utf8_decode(p + i, len - i, &cp);
        i += n ? n : 1;
        chars++;
    }
    return i;
}

/* ---- entities ---- */

struct entity {
    const char *name;
    uint32_t cp; /* 0: the entity stands for nothing visible (&shy;) */
};

/* The named references messages use: HTML's escapes, typography, currency, Latin-1 letters. */
static const struct entity entities[] = {
    {"amp", '&'},       {"AMP", '&'},       {"lt", '<'},        {"LT", '<'},
    {"gt", '>'},        {"GT", '>'},        {"quot", '"'},      {"QUOT", '"'},
    {"apos", '\''},     {"nbsp", 0xa0},     {"ensp", 0x2002},   {"emsp", 0x2003},
    {"thinsp", 0x2009}, {"shy", 0},         {"zwnj", 0x200c},   {"zwj", 0x200d},
    {"copy", 0xa9},     {"COPY", 0xa9},     {"reg", 0xae},      {"REG", 0xae},
    {"trade", 0x2122},  {"ndash", 0x2013},  {"mdash", 0x2014},  {"hellip", 0x2026},
    {"lsquo", 0x2018},  {"rsquo", 0x2019},  {"sbquo", 0x201a},  {"ldquo", 0x201c},
    {"rdquo", 0x201d},  {"bdquo", 0x201e},  {"laquo", 0xab},    {"raquo", 0xbb},
    {"lsaquo", 0x2039}, {"rsaquo", 0x203a}, {"bull", 0x2022},   {"middot", 0xb7},
    {"deg", 0xb0},      {"plusmn", 0xb1},   {"times", 0xd7},    {"divide", 0xf7},
    {"frac12", 0xbd},   {"frac14", 0xbc},   {"frac34", 0xbe},   {"sup1", 0xb9},
    {"sup2", 0xb2},     {"sup3", 0xb3},     {"micro", 0xb5},    {"para", 0xb6},
    {"sect", 0xa7},     {"cent", 0xa2},     {"pound", 0xa3},    {"euro", 0x20ac},
    {"yen", 0xa5},      {"curren", 0xa4},   {"iexcl", 0xa1},    {"iquest", 0xbf},
    {"ordf", 0xaa},     {"ordm", 0xba},     {"not", 0xac},      {"macr", 0xaf},
    {"acute", 0xb4},    {"cedil", 0xb8},    {"uml", 0xa8},      {"brvbar", 0xa6},
    {"dagger", 0x2020}, {"Dagger", 0x2021}, {"permil", 0x2030}, {"prime", 0x2032},
    {"Prime", 0x2033},  {"larr", 0x2190},   {"uarr", 0x2191},   {"rarr", 0x2192},
    {"darr", 0x2193},   {"harr", 0x2194},   {"le", 0x2264},     {"ge", 0x2265},
    {"ne", 0x2260},     {"asymp", 0x2248},  {"minus", 0x2212},  {"infin", 0x221e},
    {"check", 0x2713},  {"hearts", 0x2665}, {"star", 0x2606},   {"agrave", 0xe0},
    {"aacute", 0xe1},   {"acirc", 0xe2},    {"atilde", 0xe3},   {"auml", 0xe4},
    {"aring", 0xe5},    {"aelig", 0xe6},    {"ccedil", 0xe7},   {"egrave", 0xe8},
    {"eacute", 0xe9},   {"ecirc", 0xea},    {"euml", 0xeb},     {"igrave", 0xec},
    {"iacute", 0xed},   {"icirc", 0xee},    {"iuml", 0xef},     {"eth", 0xf0},
    {"ntilde", 0xf1},   {"ograve", 0xf2},   {"oacute", 0xf3},   {"ocirc", 0xf4},
    {"otilde", 0xf5},   {"ouml", 0xf6},     {"oslash", 0xf8},   {"ugrave", 0xf9},
    {"uacute", 0xfa},   {"ucirc", 0xfb},    {"uuml", 0xfc},     {"yacute", 0xfd},
    {"thorn", 0xfe},    {"yuml", 0xff},     {"szlig", 0xdf},    {"Agrave", 0xc0},
    {"Aacute", 0xc1},   {"Acirc", 0xc2},    {"Atilde", 0xc3},   {"Auml", 0xc4},
    {"Aring", 0xc5},    {"AElig", 0xc6},    {"Ccedil", 0xc7},   {"Egrave", 0xc8},
    {"Eacute", 0xc9},   {"Ecirc", 0xca},    {"Euml", 0xcb},     {"Igrave", 0xcc},
    {"Iacute", 0xcd},   {"Icirc", 0xce},    {"Iuml", 0xcf},     {"ETH", 0xd0},
    {"Ntilde", 0xd1},   {"Ograve", 0xd2},   {"Oacute", 0xd3},   {"Ocirc", 0xd4},
    {"Otilde", 0xd5},   {"Ouml", 0xd6},     {"Oslash", 0xd8},   {"Ugrave", 0xd9},
    {"Uacute", 0xda},   {"Ucirc", 0xdb},    {"Uuml", 0xdc},     {"Yacute", 0xdd},
    {"THORN", 0xde},    {"OElig", 0x152},   {"oelig", 0x153},   {"Scaron", 0x160},
    {"scaron", 0x161},  {"Yuml", 0x178},    {"fnof", 0x192},    {"circ", 0x2c6},
    {"tilde", 0x2dc},   {"alpha", 0x3b1},   {"beta", 0x3b2},    {"gamma", 0x3b3},
    {"delta", 0x3b4},   {"mu", 0x3bc},      {"pi", 0x3c0},      {"Omega", 0x3a9},
};

/* HTML maps &#128;..&#159; through windows-1252, as pasted Word text relies on; 0 = undefined. */
static const uint16_t cp1252[32] = {0x20ac, 0,      0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
                                    0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017d, 0,
                                    0,      0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
                                    0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,      0x017e, 0x0178};

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A numeric reference's value as a character: NUL, surrogates, values past U+10FFFF and control
 * characters other than tab, line feed, form feed and carriage return become U+FFFD. */
static uint32_t entity_numeric_cp(uint32_t v)
{
    if (v >= 0x80 && v <= 0x9f)
        return cp1252[v - 0x80] ? cp1252[v - 0x80] : CP_REPLACEMENT;
    if (v == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) || v == 0x7f ||
        (v < 0x20 && v != '\t' && v != '\n' && v != '\f' && v != '\r'))
        return CP_REPLACEMENT;
    return v;
}

/*
 * Reads a character reference at s[i] == '&'. Only complete references with their ';' count
 * ("&amp;", "&#233;", "&#xE9;"): anything else, including names this table does not know, is
 * left as written. @returns the bytes consumed with the character in @p cp (0 for &shy;), or 0.
 */
static size_t entity_parse(const char *s, size_t n, size_t i, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t p = i + 1;

    if (p < n && u[p] == '#') {
        uint32_t v = 0;
        size_t start;
        int hex = 0;

        p++;
        if (p < n && (u[p] == 'x' || u[p] == 'X')) {
            hex = 1;
            p++;
        }
        start = p;
        /* Saturate instead of overflowing: a huge number is simply past U+10FFFF. */
        for (; p < n; p++) {
            int d = hex ? hex_value(u[p]) : (is_digit(u[p]) ? u[p] - '0' : -1);
            if (d < 0)
                break;
            v = v * (hex ? 16u : 10u) + (uint32_t)d;
            if (v > 0x110000)
                v = 0x110000;
        }
        if (p == start || p >= n || u[p] != ';')
            return 0;
        *cp = entity_numeric_cp(v);
        return p + 1 - i;
    }
    if (p < n && is_alpha(u[p])) {
        size_t start = p;
        while (p < n && p - start <= ENTITY_NAME_MAX && (is_alpha(u[p]) || is_digit(u[p])))
            p++;
        if (p >= n || u[p] != ';' || p - start > ENTITY_NAME_MAX)
            return 0;
        for (size_t k = 0; k < sizeof(entities) / sizeof(entities[0]); k++) {
            if (strlen(entities[k].name) == p - start &&
                memcmp(entities[k].name, s + start, p - start) == 0) {
                *cp = entities[k].cp;
                return p + 1 - i;
            }
        }
    }
    return 0;
}

/* ---- tags ---- */

enum tag_kind {
    TAG_INLINE, /* removed, its text kept */
    TAG_BLOCK,  /* a line break before and after */
    TAG_BR,
    TAG_LI,
    TAG_UL,
    TAG_OL,
    TAG_PRE,
    TAG_CELL, /* td, th: a space between cells */
    TAG_A,
    TAG_RAW, /* script, style: the content is dropped */
};

struct tag_info {
    const char *name;
    enum tag_kind kind;
};

/* Tags Canvas's editor and pasted mail produce; deliver_is_html recognises exactly these. */
static const char *const block_tags[] = {
    "p",       "div",     "h1",    "h2",    "h3",         "h4",      "h5",      "h6",
    "table",   "tr",      "thead", "tbody", "tfoot",      "caption", "section", "article",
    "header",  "footer",  "nav",   "aside", "main",       "address", "figure",  "figcaption",
    "dl",      "dt",      "dd",    "hr",    "blockquote", "center",  "form",    "fieldset",
    "details", "summary", "html",  "body"};
static const char *const inline_tags[] = {
    "span", "b",    "i",    "u",    "s",     "em",   "strong", "small", "big",  "sup",
    "sub",  "font", "code", "mark", "del",   "ins",  "strike", "q",     "cite", "abbr",
    "tt",   "kbd",  "img",  "wbr",  "label", "head", "meta",   "link",  "title"};
static const struct tag_info special_tags[] = {
    {"br", TAG_BR},   {"li", TAG_LI},   {"ul", TAG_UL}, {"ol", TAG_OL},      {"pre", TAG_PRE},
    {"td", TAG_CELL}, {"th", TAG_CELL}, {"a", TAG_A},   {"script", TAG_RAW}, {"style", TAG_RAW}};

/* @returns 1 with the kind of the known tag called @p name (lower case), or 0. */
static int tag_lookup(const char *name, enum tag_kind *kind)
{
    for (size_t k = 0; k < sizeof(special_tags) / sizeof(special_tags[0]); k++)
        if (strcmp(special_tags[k].name, name) == 0) {
            *kind = special_tags[k].kind;
            return 1;
        }
    for (size_t k = 0; k < sizeof(block_tags) / sizeof(block_tags[0]); k++)
        if (strcmp(block_tags[k], name) == 0) {
            *kind = TAG_BLOCK;
            return 1;
        }
    for (size_t k = 0; k < sizeof(inline_tags) / sizeof(inline_tags[0]); k++)
        if (strcmp(inline_tags[k], name) == 0) {
            *kind = TAG_INLINE;
            return 1;
        }
    return 0;
}

static int is_html_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* Copies the tag name at s[p..] lowered into @p name (empty when longer than it holds).
 * @returns the index after the name. */
static size_t tag_name_read(const char *s, size_t n, size_t p, char *name, size_t namelen)
{
    size_t k = 0;
    int fits = 1;

    while (p < n && (is_alpha((unsigned char)s[p]) || is_digit((unsigned char)s[p]) ||
                     s[p] == '-' || s[p] == ':')) {
        if (k + 1 < namelen) {
            char c = s[p];
            name[k++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        } else {
            fits = 0;
        }
        p++;
    }
    name[fits ? k : 0] = '\0';
    return p;
}

/* ---- HTML to text ---- */

struct html_conv {
    struct text_buf out;
    int tags;          /* markup is interpreted (the content has a known tag) */
    int pending_space; /* white space seen since the last character written */
    int line_text;     /* the current output line has visible text */
    int line_dirty;    /* ... or at least a list marker */
    int pre;           /* depth of <pre>: white space kept as written */
    int no_more_tags;  /* no '>' is left: every later '<' is text */
    int quotes_off;    /* a quoted attribute ran to the end once: stop honouring quotes */
    int list_depth;
    unsigned long list_count[LIST_MAX];
    char list_ordered[LIST_MAX];
    char *href;        /* target of the open <a>, appended after its text */
    size_t link_start; /* output offset where the open <a>'s text starts */
};

/* Starts visible text: the pending space first, unless the line is empty or ends in one. */
static void conv_word(struct html_conv *c)
{
    struct text_buf *b = &c->out;

    if (c->pending_space && c->line_dirty && b->len > 0 && b->p[b->len - 1] != ' ')
        text_buf_putc(b, ' ');
    c->pending_space = 0;
    c->line_text = c->line_dirty = 1;
}

/* Writes one character of text. With markup on, white space runs (and &nbsp;, which becomes
 * a plain space for SMS) collapse into one space between words, as a browser shows them. */
static void conv_char(struct html_conv *c, uint32_t cp)
{
    struct text_buf *b = &c->out;

    if (cp == 0)
        return; /* &shy; */
    if (!c->tags) {
        text_buf_put_cp(b, cp);
        return;
    }
    if (c->pre) {
        if (cp == 0xa0)
            cp = ' ';
        if (cp == '\r')
            return;
        if (cp == '\n') {
            text_buf_putc(b, '\n');
            c->line_text = c->line_dirty = 0;
            return;
        }
    } else if (cp == 0xa0 || (cp < 0x80 && is_html_space((unsigned char)cp))) {
        c->pending_space = 1;
        return;
    }
    conv_word(c);
    text_buf_put_cp(b, cp);
}

/* Writes a run of printable ASCII other than space, '<' and '&' (see plain_run): what
 * conv_char does for each of them, in one append. */
static void conv_text(struct html_conv *c, const char *s, size_t len)
{
    if (c->tags)
        conv_word(c);
    text_buf_put(&c->out, s, len);
}

/* Length of the run at s[i..] of characters conv_char writes unchanged, whatever the state:
 * printable ASCII other than space, '<' and '&'. Most of a message is such runs. */
static size_t plain_run(const char *s, size_t n, size_t i)
{
    size_t k = i;

    while (k < n) {
        unsigned char ch = (unsigned char)s[k];
        if (ch <= 0x20 || ch >= 0x7f || ch == '<' || ch == '&')
            break;
        k++;
    }
    return k - i;
}

/* A line break: @p hard always (<br>); otherwise only when the line has text, or, with
 * @p marker, when it has at least a list marker (an empty <li> before the next one). */
static void conv_break(struct html_conv *c, int hard, int marker)
{
    c->pending_space = 0;
    if (hard || c->line_text || (marker && c->line_dirty)) {
        text_buf_putc(&c->out, '\n');
        c->line_text = c->line_dirty = 0;
    }
}

/* Text bytes s[i..end) as characters; bytes that are not UTF-8 become U+FFFD. */
static void conv_bytes(struct html_conv *c, const char *s, size_t i, size_t end)
{
    const unsigned char *u = (const unsigned char *)s;

    while (i < end) {
        uint32_t cp;
        size_t k = utf8_decode(u + i, end - i, &cp);
        if (!k) {
            cp = CP_REPLACEMENT;
            k = 1;
        }
        conv_char(c, cp);
        i += k;
    }
}

static void conv_list_marker(struct html_conv *c)
{
    char marker[32];
    int depth = c->list_depth < 1 ? 1 : c->list_depth;
    int indent = depth > 4 ? 3 : depth - 1; /* two spaces per nesting level, at most six */
    int d = depth - 1;

    conv_break(c, 0, 1);
    for (int k = 0; k < indent; k++)
        text_buf_put(&c->out, "  ", 2);
    if (c->list_depth >= 1 && d < LIST_MAX && c->list_ordered[d])
        snprintf(marker, sizeof(marker), "%lu. ", ++c->list_count[d]);
    else
        snprintf(marker, sizeof(marker), "- ");
    text_buf_put(&c->out, marker, strlen(marker));
    c->line_dirty = 1;
}

static int ascii_prefix_ci(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++) {
        char a = s[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != prefix[i])
            return 0;
    }
    return 1;
}

/* Keeps an <a href> target worth showing in a text message: http(s) URLs, entities decoded. */
static void conv_link_open(struct html_conv *c, const char *v, size_t vlen)
{
    struct text_buf url = {0};
    size_t i = 0;

    free(c->href);
    c->href = NULL;
    while (vlen > 0 && is_html_space((unsigned char)*v)) {
        v++;
        vlen--;
    }
    while (vlen > 0 && is_html_space((unsigned char)v[vlen - 1]))
        vlen--;
    if (vlen == 0 || vlen > HREF_MAX ||
        !(ascii_prefix_ci(v, vlen, "http://") || ascii_prefix_ci(v, vlen, "https://")))
        return;
    while (i < vlen) {
        uint32_t cp;
        size_t k = v[i] == '&' ? entity_parse(v, vlen, i, &cp) : 0;
        if (!k)
            k = utf8_decode((const unsigned char *)v + i, vlen - i, &cp);
        /* White space, controls or bytes that are not UTF-8 mean it is not a URL to show. */
        if (!k || cp <= ' ' || cp == 0x7f || cp == 0xa0 || cp == CP_REPLACEMENT) {
            free(url.p);
            return;
        }
        text_buf_put_cp(&url, cp);
        i += k;
    }
    c->href = text_buf_take(&url);
    c->link_start = c->out.len;
}

/* Compares link text and target, ignoring the scheme and a trailing '/' ("example.com/x" is
 * the same as "https://example.com/x/"). */
static int link_same(const char *text, size_t tlen, const char *href)
{
    size_t hlen = strlen(href);
    if (ascii_prefix_ci(href, hlen, "https://") && !ascii_prefix_ci(text, tlen, "https://"))
        href += 8, hlen -= 8;
    else if (ascii_prefix_ci(href, hlen, "http://") && !ascii_prefix_ci(text, tlen, "http://"))
        href += 7, hlen -= 7;
    if (hlen > 0 && href[hlen - 1] == '/')
        hlen--;
    if (tlen > 0 && text[tlen - 1] == '/')
        tlen--;
    return tlen == hlen && memcmp(text, href, tlen) == 0;
}

/* Closes the open <a>: its target follows the text in parentheses unless the text says it. */
static void conv_link_close(struct html_conv *c)
{
    const char *t;
    size_t tlen;

    if (!c->href)
        return;
    if (!c->out.oom && c->link_start <= c->out.len) {
        t = c->out.p ? c->out.p + c->link_start : "";
        tlen = c->out.len - c->link_start;
        while (tlen > 0 && (*t == ' ' || *t == '\n')) {
            t++;
            tlen--;
        }
        while (tlen > 0 && (t[tlen - 1] == ' ' || t[tlen - 1] == '\n'))
            tlen--;
        if (tlen == 0) {
            conv_word(c);
            text_buf_put(&c->out, c->href, strlen(c->href));
        } else if (!link_same(t, tlen, c->href)) {
            conv_char(c, ' ');
            conv_char(c, '(');
            text_buf_put(&c->out, c->href, strlen(c->href)); /* valid UTF-8, no spaces */
            conv_char(c, ')');
        }
    }
    free(c->href);
    c->href = NULL;
}

/* What a known tag does to the text. */
static void conv_tag(struct html_conv *c, enum tag_kind kind, int end, const char *href,
                     size_t hreflen)
{
    switch (kind) {
    case TAG_INLINE:
    case TAG_RAW:
        break;
    case TAG_BLOCK:
        conv_break(c, 0, 0);
        break;
    case TAG_BR:
        conv_break(c, 1, 0); /* </br> is read as <br>, as browsers do */
        break;
    case TAG_LI:
        if (end)
            conv_break(c, 0, 0);
        else
            conv_list_marker(c);
        break;
    case TAG_UL:
    case TAG_OL:
        conv_break(c, 0, 0);
        if (!end) {
            if (c->list_depth < LIST_MAX) {
                c->list_ordered[c->list_depth] = kind == TAG_OL;
                c->list_count[c->list_depth] = 0;
            }
            if (c->list_depth < INT_MAX)
                c->list_depth++;
        } else if (c->list_depth > 0) {
            c->list_depth--;
        }
        break;
    case TAG_PRE:
        conv_break(c, 0, 0);
        if (!end && c->pre < INT_MAX)
            c->pre++;
        else if (end && c->pre > 0)
            c->pre--;
        break;
    case TAG_CELL:
        c->pending_space = 1;
        break;
    case TAG_A:
        /* An <a> inside an open one closes it first, as HTML does. */
        conv_link_close(c);
        if (!end && href)
            conv_link_open(c, href, hreflen);
        break;
    }
}

/* Finds @p pat in s[from..n). @returns its index or n. */
static size_t find(const char *s, size_t n, size_t from, const char *pat)
{
    size_t k = strlen(pat);
    for (size_t i = from; i + k <= n; i++) {
        const char *hit = memchr(s + i, pat[0], n - i);
        if (!hit)
            break;
        i = (size_t)(hit - s);
        if (i + k <= n && memcmp(s + i, pat, k) == 0)
            return i;
    }
    return n;
}

/* Where the raw text of <script>/<style> ends: at "</name" followed by white space, '/' or
 * '>' (any case), or at the end of the content. */
static size_t raw_text_end(const char *s, size_t n, size_t from, const char *name)
{
    size_t k = strlen(name);
    for (size_t i = from; i < n; i++) {
        const char *lt = memchr(s + i, '<', n - i);
        if (!lt)
            break;
        i = (size_t)(lt - s);
        if (i + 2 + k <= n && s[i + 1] == '/' && ascii_prefix_ci(s + i + 2, n - i - 2, name) &&
            (i + 2 + k == n || is_html_space((unsigned char)s[i + 2 + k]) || s[i + 2 + k] == '/' ||
             s[i + 2 + k] == '>'))
            return i;
    }
    return n;
}

/*
 * Scans the attributes of a tag from s[p] to its '>', honouring quoted values (a '>' inside
 * quotes does not end the tag). With @p want_href, the href value is returned in @p href.
 * @returns the index of the '>', or n when a quote or the tag runs to the end.
 */
static size_t tag_attrs_scan(const char *s, size_t n, size_t p, int want_href, const char **href,
                             size_t *hreflen)
{
    while (p < n) {
        size_t ns, ne, vs, ve;

        while (p < n && (is_html_space((unsigned char)s[p]) || s[p] == '/'))
            p++;
        if (p >= n)
            break;
        if (s[p] == '>')
            return p;
        ns = p;
        /* A name runs to white space, '/', '>' or '=' (a leading '=' belongs to the name). */
        while (p < n && !is_html_space((unsigned char)s[p]) && s[p] != '/' && s[p] != '>' &&
               (s[p] != '=' || p == ns))
            p++;
        ne = p;
        while (p < n && is_html_space((unsigned char)s[p]))
            p++;
        if (p >= n || s[p] != '=')
            continue;
        p++;
        while (p < n && is_html_space((unsigned char)s[p]))
            p++;
        if (p < n && (s[p] == '"' || s[p] == '\'')) {
            const char *close = memchr(s + p + 1, s[p], n - p - 1);
            if (!close)
                return n;
            vs = p + 1;
            ve = (size_t)(close - s);
            p = ve + 1;
        } else {
            vs = p;
            while (p < n && !is_html_space((unsigned char)s[p]) && s[p] != '>')
                p++;
            ve = p;
        }
        if (want_href && ne - ns == 4 && ascii_prefix_ci(s + ns, 4, "href")) {
            *href = s + vs;
            *hreflen = ve - vs;
        }
    }
    return n;
}

/*
 * Interprets the markup at s[i] == '<'. @returns the index after it, or 0 when this '<' is
 * text. Every branch consumes what it scans or switches scanning off for good, so hostile
 * input (thousands of '<' and quotes without a '>') stays linear.
 */
static size_t conv_markup(struct html_conv *c, const char *s, size_t n, size_t i)
{
    char name[16];
    enum tag_kind kind = TAG_INLINE;
    const char *href = NULL;
    size_t hreflen = 0, p, gt;
    int end = 0, known;

    if (c->no_more_tags || i + 1 >= n)
        return 0;
    if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
        /* "<!-->" and "<!--->" are complete (empty) comments; an unterminated one runs to the
         * end and is dropped, as browsers do. */
        if (i + 4 < n && s[i + 4] == '>')
            return i + 5;
        if (i + 5 < n && s[i + 4] == '-' && s[i + 5] == '>')
            return i + 6;
        p = find(s, n, i + 4, "-->");
        return p < n ? p + 3 : n;
    }
    if (n - i >= 9 && memcmp(s + i, "<![CDATA[", 9) == 0) {
        /* CDATA content is text, taken literally (no entities); unterminated, to the end. */
        p = find(s, n, i + 9, "]]>");
        conv_bytes(c, s, i + 9, p);
        return p < n ? p + 3 : n;
    }
    if (s[i + 1] == '!' || s[i + 1] == '?') {
        /* <!DOCTYPE …>, <?xml …?> and other bogus comments end at the next '>'. */
        const char *e = memchr(s + i, '>', n - i);
        if (!e) {
            c->no_more_tags = 1;
            return 0;
        }
        return (size_t)(e - s) + 1;
    }
    p = i + 1;
    if (s[p] == '/') {
        end = 1;
        p++;
        if (p < n && s[p] == '>')
            return p + 1; /* "</>" is nothing */
    }
    if (p >= n || !is_alpha((unsigned char)s[p]))
        return 0;
    p = tag_name_read(s, n, p, name, sizeof(name));
    known = tag_lookup(name, &kind);
    gt = n;
    if (!c->quotes_off) {
        gt = tag_attrs_scan(s, n, p, known && kind == TAG_A && !end, &href, &hreflen);
        if (gt == n)
            c->quotes_off = 1;
    }
    if (gt == n) {
        /* No '>' outside quotes: take the next '>' at all, ignoring quotes (and href). */
        const char *e = memchr(s + p, '>', n - p);
        href = NULL;
        if (!e) {
            /* Not a tag after all: the '<' is text, and so is every later one. */
            c->no_more_tags = 1;
            return 0;
        }
        gt = (size_t)(e - s);
    }
    /* Unknown tags go without a trace, their text kept, as a browser shows them. */
    if (known) {
        conv_tag(c, kind, end, href, hreflen);
        if (kind == TAG_RAW && !end)
            return raw_text_end(s, n, gt + 1, name);
    }
    return gt + 1;
}

/* Post-processing of converted markup: trailing spaces off every line, blank line runs down to
 * one, no blank lines or spaces at either end. Works in place. */
static void text_normalize(struct text_buf *b)
{
    size_t r = 0, w = 0;
    int blank = 0, wrote = 0;

    if (!b->p)
        return;
    while (r < b->len) {
        const char *nl = memchr(b->p + r, '\n', b->len - r);
        size_t le = nl ? (size_t)(nl - b->p) : b->len, ls = r, e = le;

        while (e > ls && (b->p[e - 1] == ' ' || b->p[e - 1] == '\t'))
            e--;
        if (!wrote)
            while (ls < e && (b->p[ls] == ' ' || b->p[ls] == '\t'))
                ls++;
        if (e == ls) {
            blank = 1;
        } else {
            if (wrote) {
                b->p[w++] = '\n';
                if (blank)
                    b->p[w++] = '\n';
            }
            memmove(b->p + w, b->p + ls, e - ls);
            w += e - ls;
            wrote = 1;
            blank = 0;
        }
        r = le + 1;
    }
    b->len = w;
    b->p[w] = '\0';
}

static int is_trim_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Leading and trailing ASCII white space off, in place. */
static void text_trim(struct text_buf *b)
{
    size_t s = 0, e = b->len;

    if (!b->p)
        return;
    while (s < e && is_trim_space(b->p[s]))
        s++;
    while (e > s && is_trim_space(b->p[e - 1]))
        e--;
    memmove(b->p, b->p + s, e - s);
    b->len = e - s;
    b->p[b->len] = '\0';
}

/* 1 when s[i] starts a known tag (<p, </P, <br/ …) or a comment. */
static int tag_at(const char *s, size_t n, size_t i)
{
    char name[16];
    enum tag_kind kind;
    size_t p = i + 1;

    if (n - i >= 4 && memcmp(s + i, "<!--", 4) == 0)
        return 1;
    if (p < n && s[p] == '/')
        p++;
    if (p >= n || !is_alpha((unsigned char)s[p]))
        return 0;
    p = tag_name_read(s, n, p, name, sizeof(name));
    return p < n && (is_html_space((unsigned char)s[p]) || s[p] == '/' || s[p] == '>') &&
           tag_lookup(name, &kind);
}

/* 1 when @p s has a known tag; with @p or_entity, a recognised entity counts too. */
static int html_scan(const char *s, int or_entity)
{
    size_t n = strlen(s);
    uint32_t cp;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '<' && tag_at(s, n, i))
            return 1;
        if (or_entity && s[i] == '&' && entity_parse(s, n, i, &cp))
            return 1;
    }
    return 0;
}

int deliver_is_html(const char *content)
{
    return content ? html_scan(content, 1) : 0;
}

/*
 * Decisions beyond the header's contract:
 * - Markup is interpreted only when the content has a known tag. Content with entities but no
 *   tag has its entities decoded and keeps its own line breaks; plain text is returned trimmed.
 * - Paragraphs and other blocks end with one line break ("<p>a</p><p>b</p>" is "a\nb"); a blank
 *   line comes only from an explicit <br> (Canvas writes an empty line as <p><br></p>).
 * - &nbsp; becomes a plain space and collapses with its neighbours: readable on a phone.
 * - <ol> items are numbered "1. ", <ul> items "- ", nested lists indented two spaces a level.
 * - A link's http(s) target follows its text, "portal (https://…)", unless the text is the URL:
 *   an SMS cannot carry the link otherwise.
 * - A '<' that starts no tag is text; a tag that never closes is text too. Comments, CDATA
 *   (kept as literal text) and <!…> / <?…?> are understood. Bytes that are not UTF-8 become
 *   U+FFFD, so the result is always valid UTF-8 (jansson refuses anything else).
 */
char *deliver_html_to_text(const char *content)
{
    struct html_conv c;
    size_t n, i = 0;
    char *out;

    memset(&c, 0, sizeof(c));
    if (!content)
        return strdup("");
    n = strlen(content);
    /* The text is rarely longer than the markup: one allocation instead of growing from 64. */
    text_buf_reserve(&c.out, n);
    c.tags = html_scan(content, 0);
    while (i < n) {
        char ch = content[i];
        size_t run = plain_run(content, n, i);
        if (run > 0) {
            conv_text(&c, content + i, run);
            i += run;
            continue;
        }
        if (ch == '<' && c.tags) {
            size_t next = conv_markup(&c, content, n, i);
            if (next) {
                i = next;
                continue;
            }
        } else if (ch == '&') {
            uint32_t cp;
            size_t k = entity_parse(content, n, i, &cp);
            if (k) {
                /* &nbsp; is a plain space: a phone shows it the same and it collapses. */
                conv_char(&c, cp == 0xa0 ? ' ' : cp);
                i += k;
                continue;
            }
        } else if ((unsigned char)ch >= 0x80) {
            uint32_t cp;
            size_t k = utf8_decode((const unsigned char *)content + i, n - i, &cp);
            conv_char(&c, k ? cp : CP_REPLACEMENT);
            i += k ? k : 1;
            continue;
        }
        conv_char(&c, (unsigned char)ch);
        i++;
    }
    conv_link_close(&c);
    if (c.tags)
        text_normalize(&c.out);
    text_trim(&c.out);
    out = text_buf_take(&c.out);
    free(c.href);
    return out;
}

/* ---- outbound bodies ---- */

/* Appends "name=" and @p value form-encoded (RFC 3986 unreserved characters kept, everything
 * else, UTF-8 bytes included, as %XX; space is %20, which Twilio reads like '+'). */
static void form_field(struct text_buf *b, const char *name, const char *value, size_t len)
{
    char *enc;

    if (len > INT_MAX) {
        b->oom = 1;
        return;
    }
    enc = curl_easy_escape(NULL, value, (int)len);
    if (!enc) {
        b->oom = 1;
        return;
    }
    if (b->len > 0)
        text_buf_putc(b, '&');
    text_buf_put(b, name, strlen(name));
    text_buf_putc(b, '=');
    text_buf_put(b, enc, strlen(enc));
    curl_free(enc);
}

char *deliver_twilio_form(const char *to, const char *from, const char *text)
{
    struct text_buf b = {0};

    to = to ? to : "";
    from = from ? from : "";
    text = text ? text : "";
    form_field(&b, "To", to, strlen(to));
    form_field(&b, "From", from, strlen(from));
    form_field(&b, "Body", text, utf8_prefix(text, strlen(text), TWILIO_BODY_MAX));
    return text_buf_take(&b);
}

/* @p text as HTML: &, <, >, " and ' escaped, line breaks as <br>. @returns malloc'd or NULL. */
static char *text_to_html(const char *text)
{
    struct text_buf b = {0};

    text_buf_put(&b, "", 0);
    for (const char *p = text; *p; p++) {
        switch (*p) {
        case '&':
            text_buf_put(&b, "&amp;", 5);
            break;
        case '<':
            text_buf_put(&b, "&lt;", 4);
            break;
        case '>':
            text_buf_put(&b, "&gt;", 4);
            break;
        case '"':
            text_buf_put(&b, "&quot;", 6);
            break;
        case '\'':
            text_buf_put(&b, "&#39;", 5);
            break;
        case '\r':
            break;
        case '\n':
            text_buf_put(&b, "<br>", 4);
            break;
        default:
            text_buf_putc(&b, *p);
        }
    }
    return text_buf_take(&b);
}

json_t *deliver_sendgrid_body(const char *to, const char *from, const char *subject,
                              const char *text, const char *html_or_null)
{
    json_t *body = NULL;
    char *html = NULL;

    text = text ? text : "";
    if (!html_or_null) {
        html = text_to_html(text);
        if (!html)
            goto out;
    }
    body =
        json_pack("{s:[{s:[{s:s}]}], s:{s:s}, s:s, s:[{s:s, s:s}, {s:s, s:s}]}", "personalizations",
                  "to", "email", to ? to : "", "from", "email", from ? from : "", "subject",
                  subject ? subject : "", "content", "type", "text/plain", "value", text, "type",
                  "text/html", "value", html_or_null ? html_or_null : html);
out:
    free(html);
    return body;
}

char *deliver_webhook_body(const struct deliver_message *msg, const char *text,
                           const struct deliver_recipient *contacts, size_t ncontacts, size_t *len)
{
    struct json_writer w;

    if (!msg)
        return NULL;
    json_writer_init(&w);
    json_writer_object_begin(&w);
    json_writer_member(&w, "type", "patient.message.v1");
    json_writer_member(&w, "communication_id", msg->communication_id);
    json_writer_member(&w, "patient_id", msg->patient_id);
    json_writer_member(&w, "practitioner_id", msg->practitioner_id);
    /* "sent" is left out rather than sent empty; "html" only when the content is HTML. */
    json_writer_member_opt(&w, "sent", msg->sent[0] ? msg->sent : NULL);
    json_writer_member(&w, "text", text ? text : "");
    json_writer_member_opt(&w, "html", deliver_is_html(msg->content) ? msg->content : NULL);
    json_writer_key(&w, "contacts");
    json_writer_array_begin(&w);
    for (size_t i = 0; i < ncontacts; i++) {
        const struct deliver_recipient *r = &contacts[i];
        json_writer_object_begin(&w);
        json_writer_member(&w, "name", r->name);
        json_writer_member(&w, "relationship", r->relationship);
        json_writer_member_opt(&w, "phone", r->phone[0] ? r->phone : NULL);
        json_writer_member_opt(&w, "email", r->email[0] ? r->email : NULL);
        json_writer_object_end(&w);
    }
    json_writer_array_end(&w);
    json_writer_object_end(&w);
    return json_writer_finish(&w, len);
}
