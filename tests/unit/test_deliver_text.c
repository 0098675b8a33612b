/* Unit tests for deliver_text: Canvas HTML to SMS text (hostile markup included), and the exact
 * Twilio form, SendGrid and webhook bodies. */
#include "deliver.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *examples;

/* The text @p in becomes, checked at the caller's line. */
#define TEXT_IS(in, want)                                                                          \
    do {                                                                                           \
        char *text_ = deliver_html_to_text(in);                                                    \
        CHECK_STR(text_, want);                                                                    \
        free(text_);                                                                               \
    } while (0)

static json_t *J(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    if (!v)
        fprintf(stderr, "bad test JSON (%s): %s\n", err.text, text);
    CHECK(v != NULL);
    return v;
}

/* Parses and frees the text @p s (NULL stays NULL). */
static json_t *parsed(char *s)
{
    json_t *v = s ? json_loads(s, 0, NULL) : NULL;
    free(s);
    return v;
}

/* Checks @p got equals the JSON text @p want, printing both when not. Takes @p got. */
#define JSON_IS(got, want)                                                                         \
    do {                                                                                           \
        json_t *got_ = (got), *want_ = J(want);                                                    \
        int eq_ = got_ && want_ && json_equal(got_, want_);                                        \
        CHECK(eq_);                                                                                \
        if (!eq_) {                                                                                \
            char *g_ = got_ ? json_dumps(got_, JSON_COMPACT | JSON_SORT_KEYS) : NULL;              \
            fprintf(stderr, "  got:  %s\n  want: %s\n", g_ ? g_ : "(null)", want);                 \
            free(g_);                                                                              \
        }                                                                                          \
        json_decref(got_);                                                                         \
        json_decref(want_);                                                                        \
    } while (0)

/* A malloc'd string of @p count copies of @p unit. */
static char *repeat(const char *unit, size_t count)
{
    size_t n = strlen(unit);
    char *s = malloc(n * count + 1);
    if (!s)
        abort();
    for (size_t i = 0; i < count; i++)
        memcpy(s + i * n, unit, n);
    s[n * count] = '\0';
    return s;
}

/* The decoded value of form field @p name in @p form (test-side decoder: %XX and '+').
 * @returns a malloc'd string or NULL. */
static char *form_value(const char *form, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = form;

    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t flen = amp ? (size_t)(amp - p) : strlen(p);
        if (flen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            char *out = malloc(flen), *w = out;
            for (const char *r = p + nlen + 1; r < p + flen; r++) {
                if (*r == '%' && r + 2 < p + flen) {
                    char hex[3] = {r[1], r[2], 0};
                    *w++ = (char)strtol(hex, NULL, 16);
                    r += 2;
                } else {
                    *w++ = *r == '+' ? ' ' : *r;
                }
            }
            *w = '\0';
            return out;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

/* ---- HTML to text ---- */

static void test_canvas_examples(void)
{
    json_t *c = json_object_get(examples, "communication_staff_to_patient_html");
    const char *content = json_string_value(
        json_object_get(json_array_get(json_object_get(c, "payload"), 0), "contentString"));

    /* Paragraphs are separated by one line break; &nbsp; is a plain space. */
    TEXT_IS(content, "Your lab results are in & look good.\nSee you soon");
    CHECK_INT(deliver_is_html(content), 1);

    c = json_object_get(examples, "communication_patient_to_staff");
    content = json_string_value(
        json_object_get(json_array_get(json_object_get(c, "payload"), 0), "contentString"));
    TEXT_IS(content, "Thanks, will do.");
    CHECK_INT(deliver_is_html(content), 0);
}

static void test_plain_text(void)
{
    /* Not HTML: unchanged (line breaks and spacing included) but trimmed. */
    TEXT_IS("  Thanks,  will do.\n\n\nBye \n", "Thanks,  will do.\n\n\nBye");
    TEXT_IS("a < b && c > d", "a < b && c > d");
    TEXT_IS("x<y>z, AT&T, <3 you", "x<y>z, AT&T, <3 you");
    TEXT_IS("", "");
    TEXT_IS(" \n\t ", "");
    TEXT_IS(NULL, "");
    /* Entities but no tag: decoded, line breaks kept. */
    TEXT_IS("Tom &amp; Jerry\nLine 2", "Tom & Jerry\nLine 2");
    TEXT_IS("a&nbsp;b", "a b");
}

static void test_is_html(void)
{
    CHECK_INT(deliver_is_html("<p>x</p>"), 1);
    CHECK_INT(deliver_is_html("x<br>y"), 1);
    CHECK_INT(deliver_is_html("x<BR/>y"), 1);
    CHECK_INT(deliver_is_html("<div class=\"a\">x"), 1);
    CHECK_INT(deliver_is_html("</P>"), 1);
    CHECK_INT(deliver_is_html("<!-- note -->"), 1);
    CHECK_INT(deliver_is_html("fish &amp; chips"), 1);
    CHECK_INT(deliver_is_html("&#169; 2026"), 1);
    CHECK_INT(deliver_is_html("a < b"), 0);
    CHECK_INT(deliver_is_html("x<y>z"), 0);
    CHECK_INT(deliver_is_html("<3 you"), 0);
    CHECK_INT(deliver_is_html("<pen> and <paper>"), 0);
    CHECK_INT(deliver_is_html("Tom & Jerry"), 0);
    CHECK_INT(deliver_is_html("&bogus; &amp"), 0);
    CHECK_INT(deliver_is_html(""), 0);
    CHECK_INT(deliver_is_html(NULL), 0);
}

static void test_structure(void)
{
    TEXT_IS("<P>One</P><DIV>Two</DIV><H2>Three</H2>Four", "One\nTwo\nThree\nFour");
    TEXT_IS("a<br>b<br/>c<br />d<BR >e</br>f<Br\n/>g", "a\nb\nc\nd\ne\nf\ng");
    TEXT_IS("<div><p><b><i>deep</i></b></p></div>", "deep");
    TEXT_IS("<div>a<div>b</div>c</div>", "a\nb\nc");
    TEXT_IS("<p>  Hello\n   world  </p>\n\n<p>again</p>", "Hello world\nagain");
    TEXT_IS("<p>Dear <b>Pat</b>,</p><p>Your <i>results</i>  are   in.</p>",
            "Dear Pat,\nYour results are in.");
    /* Canvas writes an empty line as <p><br></p>: one blank line, and runs of them only one. */
    TEXT_IS("<p>a</p><p><br></p><p>b</p>", "a\n\nb");
    TEXT_IS("<p>a</p><p><br></p><p><br></p><p><br></p><p>b</p>", "a\n\nb");
    TEXT_IS("<p></p><p>a</p><p></p><p></p><p>b</p>", "a\nb");
    TEXT_IS("<p><br></p><p><br></p>", "");
    TEXT_IS("<p>a<br><br><br><br>b</p>", "a\n\nb");
    TEXT_IS("<p>trailing   </p><p>   leading</p>", "trailing\nleading");
    TEXT_IS("<ul><li>Take 1 pill</li><li>Drink water</li></ul>", "- Take 1 pill\n- Drink water");
    TEXT_IS("<p>Steps:</p><ol><li>one</li><li>two</li></ol><p>Done</p>",
            "Steps:\n1. one\n2. two\nDone");
    TEXT_IS("<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>", "- a\n  - b\n- c");
    TEXT_IS("<ul><li><p>para in item</p></li></ul>", "- para in item");
    TEXT_IS("<li>stray item", "- stray item");
    TEXT_IS("<table><tr><td>a</td><td>b</td></tr><tr><th>c</th><td>d</td></tr></table>",
            "a b\nc d");
    TEXT_IS("<pre>line 1\n  indented</pre>after", "line 1\n  indented\nafter");
    TEXT_IS("x<hr>y", "x\ny");
    TEXT_IS("<p>a</p>\r\n<p>b</p>", "a\nb");
}

static void test_links(void)
{
    TEXT_IS("<p>Open the <a href=\"https://portal.example/r?a=1&amp;b=2\">portal</a>.</p>",
            "Open the portal (https://portal.example/r?a=1&b=2).");
    TEXT_IS("<a href=\"https://portal.example/\">portal.example</a>", "portal.example");
    TEXT_IS("<a HREF='https://portal.example'>https://portal.example</a>",
            "https://portal.example");
    TEXT_IS("<p>See <a href=\"https://x.example/p\"></a></p>", "See https://x.example/p");
    TEXT_IS("<p>x <a href=\"javascript:alert(1)\">y</a></p>", "x y");
    TEXT_IS("<p><a href=\"mailto:a@b.example\">mail us</a></p>", "mail us");
    TEXT_IS("<a href=\"https://bad example\">z</a>", "z");
    TEXT_IS("<a href=\"https://a.example\">one<a href=\"https://b.example\">two</a>",
            "one (https://a.example)two (https://b.example)");
    /* Left open past its paragraph: the target still follows, on the next line. */
    TEXT_IS("<p><a href=\"https://a.example\">never closed</p>",
            "never closed\n(https://a.example)");
}

static void test_hostile_markup(void)
{
    TEXT_IS("<p>1 < 2 and 3 > 2</p>", "1 < 2 and 3 > 2");
    TEXT_IS("<p>x <= y, a<-b, c</ d</p>", "x <= y, a<-b, c</ d");
    TEXT_IS("<p>hello <b", "hello <b");
    TEXT_IS("<p>hi</p><a href=\"x", "hi\n<a href=\"x");
    TEXT_IS("<p>end <", "end <");
    TEXT_IS("<p class=\"x>y\" title='a>b'>text</p>", "text");
    TEXT_IS("<p>a</p><img alt=\"x>y\" src=q><p>b</p>", "a\nb");
    /* A quote that never closes: the tag ends at the next '>' after all. */
    TEXT_IS("<p title=\"oops>a</p><p>b</p>", "a\nb");
    TEXT_IS("<p>a<!-- <p>hidden</p> -->b</p>", "ab");
    TEXT_IS("<p>a</p><!-- never closed <p>b</p>", "a");
    TEXT_IS("<!---->x<!-->y<!--->z<br>", "xyz");
    TEXT_IS("<p>x<![CDATA[<b>&amp;</b>]]>y</p>", "x<b>&amp;</b>y");
    TEXT_IS("<p>x</p><![CDATA[open", "x\nopen");
    TEXT_IS("<!DOCTYPE html><?xml version=\"1.0\"?><html><body><p>doc</p></body></html>", "doc");
    TEXT_IS("<p>a</p><script type=\"text/javascript\">if (a<b) alert('</p>')</script>"
            "<style>p{color:red}</style><p>b</p>",
            "a\nb");
    TEXT_IS("<SCRIPT>x()</SCRIPT >y<br>", "y");
    TEXT_IS("<p>a</p><script>never closed<p>b</p>", "a");
    TEXT_IS("<p>a</p><script>x</scripty>still script</script>b", "a\nb");
    TEXT_IS("<p>&lt;b&gt;not bold&lt;/b&gt;</p>", "<b>not bold</b>");
    TEXT_IS("<unknown-tag foo=bar>kept</unknown-tag><p>x</p>", "kept\nx");
    TEXT_IS("<p>a</>b</p>", "ab");
    /* Each byte that is not part of valid UTF-8 becomes U+FFFD; valid multi-byte text is kept. */
    TEXT_IS("<p>caf\xc3\xa9 \xff end \xe2\x82</p>",
            "caf\xc3\xa9 \xef\xbf\xbd end \xef\xbf\xbd\xef\xbf\xbd");
    TEXT_IS("plain \xc0\xaf", "plain \xef\xbf\xbd\xef\xbf\xbd");
}

static void test_entities(void)
{
    TEXT_IS("<p>&amp;&lt;&gt;&quot;&#39;&apos;</p>", "&<>\"''");
    TEXT_IS("<p>x&nbsp;&nbsp; y&nbsp;</p>", "x y");
    TEXT_IS("<p>&copy; &reg; &trade; &ndash; &mdash; &hellip;</p>",
            "\xc2\xa9 \xc2\xae \xe2\x84\xa2 \xe2\x80\x93 \xe2\x80\x94 \xe2\x80\xa6");
    TEXT_IS("<p>&lsquo;a&rsquo; &ldquo;b&rdquo; caf&eacute; &Eacute;cole na&iuml;ve &euro;5</p>",
            "\xe2\x80\x98"
            "a\xe2\x80\x99 \xe2\x80\x9c"
            "b\xe2\x80\x9d caf\xc3\xa9 \xc3\x89"
            "cole na\xc3\xafve \xe2\x82\xac"
            "5");
    TEXT_IS("<p>&#65;&#x42;&#X43;&#233;&#x1F600;</p>", "ABC\xc3\xa9\xf0\x9f\x98\x80");
    /* Windows-1252 numbers as browsers read them (pasted Word text). */
    TEXT_IS("<p>&#150; &#146;</p>", "\xe2\x80\x93 \xe2\x80\x99");
    /* Invalid code points become U+FFFD, never a NUL, a surrogate or an overflowed value. */
    TEXT_IS("<p>[&#0;][&#xD800;][&#xDFFF;][&#x110000;][&#1114112;][&#1;][&#x7F;][&#129;]</p>",
            "[\xef\xbf\xbd][\xef\xbf\xbd][\xef\xbf\xbd][\xef\xbf\xbd][\xef\xbf\xbd][\xef\xbf\xbd]"
            "[\xef\xbf\xbd][\xef\xbf\xbd]");
    TEXT_IS("<p>&#99999999999999999999999999;&#xFFFFFFFFFFFFFFFFFFFF;</p>",
            "\xef\xbf\xbd\xef\xbf\xbd");
    TEXT_IS("<p>&#x10FFFF;</p>", "\xf4\x8f\xbf\xbf");
    /* Unknown or incomplete references are left as written. */
    TEXT_IS("<p>&bogus; &amp &#; &#x; &#12a; &; & AT&T &AMP; &Amp;</p>",
            "&bogus; &amp &#; &#x; &#12a; &; & AT&T & &Amp;");
    TEXT_IS("<p>co&shy;operate</p>", "cooperate");
    TEXT_IS("<p>&thisnameiswaytoolongtobeanentityatall;</p>",
            "&thisnameiswaytoolongtobeanentityatall;");
    /* A decoded newline is white space like any other in HTML. */
    TEXT_IS("<p>a&#10;b</p>", "a b");
}

/* Hostile shapes that would be quadratic in a naive scanner must convert in linear time. What is
 * checked is how the CPU time grows from a quarter of the input to the whole of it (~2 MB):
 * about 4x when linear, about 16x when quadratic. A ratio, not a time limit, so a slow machine,
 * a sanitizer build or valgrind cannot make it fail. */
static double convert_secs(const char *unit, size_t count)
{
    char *s = repeat(unit, count), *t;
    clock_t start = clock();
    double secs;
    t = deliver_html_to_text(s);
    secs = (double)(clock() - start) / CLOCKS_PER_SEC;
    CHECK(t != NULL);
    free(t);
    free(s);
    return secs;
}

static void test_linear_time(void)
{
    static const struct {
        const char *unit;
        size_t count;
    } shapes[] = {
        {"<br <", 400000},                  /* tags that never close */
        {"<a \"", 500000},                  /* ... with quotes */
        {"<p title=\">", 180000},           /* a quote that never closes, '>' inside it */
        {"<i b=\"><i c='>", 140000},        /* both quote kinds, unbalanced */
        {"<!--<![CDATA[<script>&#", 90000}, /* unterminated comment, CDATA, script */
        {"&#99999999999", 150000},          /* numeric references without ';' */
        {"<a href=\"https://x.example/\">", 70000},
        {"<li>", 200000},
        {"<ol><li>", 120000},
    };
    char *s, *t;

    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        double quarter = convert_secs(shapes[i].unit, shapes[i].count / 4);
        double whole = convert_secs(shapes[i].unit, shapes[i].count);
        /* Below a few milliseconds the clock is too coarse to compare: that is linear anyway. */
        int linear = whole < 0.02 || whole < 9.0 * (quarter > 0.001 ? quarter : 0.001);
        if (!linear)
            fprintf(stderr, "shape %zu (\"%s\"): %.3f s for 1/4, %.3f s for all\n", i,
                    shapes[i].unit, quarter, whole);
        CHECK(linear);
    }

    s = repeat("<li>", 1000);
    t = deliver_html_to_text(s);
    CHECK(t != NULL && strncmp(t, "-\n-\n", 4) == 0);
    free(t);
    free(s);

    s = repeat("<ol><li>", 1000);
    t = deliver_html_to_text(s);
    CHECK(t != NULL && strncmp(t, "1.\n  1.\n    1.\n      1.\n      1.", 32) == 0);
    free(t);
    free(s);
}

/* ---- Twilio ---- */

static void test_twilio_form(void)
{
    char *form =
        deliver_twilio_form("+15554320555", "+15550001111", "Hi & bye = 1+1\nok \xf0\x9f\x98\x80");
    CHECK_STR(form, "To=%2B15554320555&From=%2B15550001111&Body=Hi%20%26%20bye%20%3D%201%2B1%0Aok"
                    "%20%F0%9F%98%80");
    free(form);

    form = deliver_twilio_form("+15554320555", "Clinic", "");
    CHECK_STR(form, "To=%2B15554320555&From=Clinic&Body=");
    free(form);
    form = deliver_twilio_form("+15554320555", "Clinic", NULL);
    CHECK_STR(form, "To=%2B15554320555&From=Clinic&Body=");
    free(form);
}

static void test_twilio_cut(void)
{
    char *a = repeat("a", 1599), *text, *form, *body;
    size_t n = strlen(a);

    /* 1599 ASCII + "é" + "b": the cut falls after the two-byte é, never inside it. */
    text = malloc(n + 4);
    memcpy(text, a, n);
    memcpy(text + n,
           "\xc3\xa9"
           "b",
           4);
    form = deliver_twilio_form("+15554320555", "+15550001111", text);
    body = form_value(form, "Body");
    CHECK(body != NULL);
    CHECK_INT(body ? utf8_chars(body) : 0, 1600);
    CHECK_INT(body ? strlen(body) : 0, 1601);
    CHECK(body && strcmp(body + 1599, "\xc3\xa9") == 0);
    free(body);
    free(form);
    free(text);

    /* 1601 emoji (4 bytes each): 1600 whole ones are sent. */
    text = repeat("\xf0\x9f\x98\x80", 1601);
    form = deliver_twilio_form("+15554320555", "+15550001111", text);
    body = form_value(form, "Body");
    CHECK_INT(body ? utf8_chars(body) : 0, 1600);
    CHECK_INT(body ? strlen(body) : 0, 6400);
    free(body);
    free(form);
    free(text);

    /* Three-byte characters right at the limit: exactly 1600 are not cut. */
    text = repeat("\xe2\x80\x94", 1600);
    form = deliver_twilio_form("+15554320555", "+15550001111", text);
    body = form_value(form, "Body");
    CHECK_STR(body, text);
    free(body);
    free(form);
    free(text);
    free(a);
}

/* ---- SendGrid ---- */

static void test_sendgrid_body(void)
{
    JSON_IS(deliver_sendgrid_body("pat.example@example.com", "care@clinic.example",
                                  "A message from your care team",
                                  "Your lab results are in & look good.\nSee you soon",
                                  "<p>Your lab results are in &amp; look good.</p><p>See "
                                  "you&nbsp;soon</p>"),
            "{\"personalizations\":[{\"to\":[{\"email\":\"pat.example@example.com\"}]}],"
            "\"from\":{\"email\":\"care@clinic.example\"},"
            "\"subject\":\"A message from your care team\","
            "\"content\":[{\"type\":\"text/plain\",\"value\":\"Your lab results are in & look "
            "good.\\nSee you soon\"},{\"type\":\"text/html\",\"value\":\"<p>Your lab results are "
            "in &amp; look good.</p><p>See you&nbsp;soon</p>\"}]}");

    /* Plain text: the HTML part is the text escaped, line breaks as <br>. */
    JSON_IS(deliver_sendgrid_body("a@b.example", "c@d.example", "Hi",
                                  "1 < 2 & \"quotes\"\nit's\r\nok", NULL),
            "{\"personalizations\":[{\"to\":[{\"email\":\"a@b.example\"}]}],"
            "\"from\":{\"email\":\"c@d.example\"},\"subject\":\"Hi\","
            "\"content\":[{\"type\":\"text/plain\",\"value\":\"1 < 2 & "
            "\\\"quotes\\\"\\nit's\\r\\nok\"},"
            "{\"type\":\"text/html\",\"value\":\"1 &lt; 2 &amp; "
            "&quot;quotes&quot;<br>it&#39;s<br>ok\"}]}");

    /* The order of "content" matters to SendGrid (text/plain first). */
    {
        json_t *b = deliver_sendgrid_body("a@b.example", "c@d.example", "Hi", "x", NULL);
        json_t *c0 = json_array_get(json_object_get(b, "content"), 0);
        CHECK_STR(json_string_value(json_object_get(c0, "type")), "text/plain");
        json_decref(b);
    }
}

/* ---- webhook ---- */

static void test_webhook_body(void)
{
    json_t *c = json_object_get(examples, "communication_staff_to_patient_html");
    struct deliver_message msg;
    struct deliver_recipient people[2];
    const char *reason = "unset";
    char *text;

    CHECK_INT(deliver_message_check(c, "b3084f7e884e4af2b7e23b1dca494abd", &msg, &reason, &text),
              0);
    memset(people, 0, sizeof(people));
    people[0].is_contact = 1;
    snprintf(people[0].relationship, sizeof(people[0].relationship), "ARI");
    snprintf(people[0].name, sizeof(people[0].name), "Dana Example");
    snprintf(people[0].phone, sizeof(people[0].phone), "+15554320999");
    snprintf(people[0].email, sizeof(people[0].email), "dana@example.com");
    people[1].is_contact = 1;
    snprintf(people[1].relationship, sizeof(people[1].relationship), "POA");
    snprintf(people[1].name, sizeof(people[1].name), "Lee Proxy");
    snprintf(people[1].email, sizeof(people[1].email), "lee@example.com");

    JSON_IS(parsed(deliver_webhook_body(&msg, text, people, 2, NULL)),
            "{\"type\":\"patient.message.v1\","
            "\"communication_id\":\"8f2b1c7e-5d4a-4b3e-9c1f-2a6d7e8f9a0b\","
            "\"patient_id\":\"b3084f7e884e4af2b7e23b1dca494abd\","
            "\"practitioner_id\":\"4150cd20de8a470aa570a852859ac87e\","
            "\"sent\":\"2026-03-02T15:04:05.123456+00:00\","
            "\"text\":\"Your lab results are in & look good.\\nSee you soon\","
            "\"html\":\"<p>Your lab results are in &amp; look good.</p><p>See "
            "you&nbsp;soon</p>\","
            "\"contacts\":[{\"name\":\"Dana Example\",\"relationship\":\"ARI\","
            "\"phone\":\"+15554320999\",\"email\":\"dana@example.com\"},"
            "{\"name\":\"Lee Proxy\",\"relationship\":\"POA\",\"email\":\"lee@example.com\"}]}");
    free(text);

    /* Plain content, no sent, no contacts: no "html", no "sent", "contacts" still there. */
    memset(&msg, 0, sizeof(msg));
    snprintf(msg.communication_id, sizeof(msg.communication_id), "c-1");
    snprintf(msg.patient_id, sizeof(msg.patient_id), "p1");
    snprintf(msg.practitioner_id, sizeof(msg.practitioner_id), "d1");
    msg.content = "  Plain reply  ";
    JSON_IS(parsed(deliver_webhook_body(&msg, "Plain reply", NULL, 0, NULL)),
            "{\"type\":\"patient.message.v1\",\"communication_id\":\"c-1\",\"patient_id\":\"p1\","
            "\"practitioner_id\":\"d1\",\"text\":\"Plain reply\",\"contacts\":[]}");

    /* The exact bytes (what the signature covers): compact, members in the documented order,
     * escapes as jansson writes them, the length handed out. */
    size_t len = 0;
    char *body =
        deliver_webhook_body(&msg, "Line \"one\"\n\ttab \x01 caf\xc3\xa9 </p>", NULL, 0, &len);
    CHECK_STR(body, "{\"type\":\"patient.message.v1\",\"communication_id\":\"c-1\","
                    "\"patient_id\":\"p1\",\"practitioner_id\":\"d1\","
                    "\"text\":\"Line \\\"one\\\"\\n\\ttab \\u0001 caf\xc3\xa9 </p>\","
                    "\"contacts\":[]}");
    CHECK_INT(len, body ? strlen(body) : 0);
    free(body);

    /* Text that is not UTF-8 cannot be sent: no body (the channel fails as transient). */
    CHECK(deliver_webhook_body(&msg, "caf\xe9", NULL, 0, &len) == NULL);
}

int main(void)
{
    json_error_t err;

    examples = json_load_file(PM_TESTDATA_DIR "/canvas-examples.json", 0, &err);
    if (!examples) {
        fprintf(stderr, "canvas-examples.json: %s\n", err.text);
        return 1;
    }
    test_canvas_examples();
    test_plain_text();
    test_is_html();
    test_structure();
    test_links();
    test_hostile_markup();
    test_entities();
    test_linear_time();
    test_twilio_form();
    test_twilio_cut();
    test_sendgrid_body();
    test_webhook_body();
    json_decref(examples);
    return UNIT_DONE();
}
