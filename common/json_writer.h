/* JSON text written straight into one buffer, for the documents built once per message. */
#ifndef PM_JSON_WRITER_H
#define PM_JSON_WRITER_H

#include <stddef.h>
#include <stdint.h>

/*
 * Why not json_pack + json_dumpb: building a tree of one allocation per value and then walking it
 * to text was about 15 % of pm-deliver's CPU per message (the webhook body and the delivery
 * result; benchmarks.md, finding 9). The writer appends to one growing buffer instead. Its output
 * is byte for byte what jansson's json_dumpb(…, JSON_COMPACT) gives for the same members in the
 * same order (tests/unit/test_json_writer.c and fuzz_json_writer compare the two), so readers see
 * no difference. Parsing stays with jansson.
 *
 * Usage: json_writer_init, then object/array/member calls in document order, then
 * json_writer_finish. A call after a failure does nothing; the failure (no memory, a string that
 * is not UTF-8, a required member without a value, nesting deeper than 64, calls out of order
 * such as a key in an array, a value in an object without its key, "}" closing an array or a
 * second top-level value) surfaces as NULL from json_writer_finish.
 */
struct json_writer {
    char *buf; /* malloc'd, NUL-terminated once finished */
    size_t len, cap;
    unsigned depth;
    uint64_t filled; /* bit d: the container at depth d has a member already (needs a comma) */
    uint64_t arrays; /* bit d: the container at depth d is an array (else an object) */
    int after_key;   /* a member's key is written, its value comes next */
    int failed;
};

void json_writer_init(struct json_writer *w);

void json_writer_object_begin(struct json_writer *w);
void json_writer_object_end(struct json_writer *w);
void json_writer_array_begin(struct json_writer *w);
void json_writer_array_end(struct json_writer *w);

/** @brief A member name inside an object; one value call (string, int, object, array) next. */
void json_writer_key(struct json_writer *w, const char *key);

/** @brief A string value (an array element, or after json_writer_key); NULL is a failure. */
void json_writer_string(struct json_writer *w, const char *s);

void json_writer_int(struct json_writer *w, long long v);

/** @brief "key":"value" — json_pack's "s:s": a NULL @p value is a failure. */
void json_writer_member(struct json_writer *w, const char *key, const char *value);

/** @brief "key":"value", or nothing when @p value is NULL — json_pack's "s:s*". */
void json_writer_member_opt(struct json_writer *w, const char *key, const char *value);

/**
 * @brief Like json_writer_member_opt for free text that may have been cut short into a fixed
 *        buffer (an error message with Canvas's wording in it): each byte that is not part of a
 *        UTF-8 character becomes U+FFFD instead of failing the whole document.
 */
void json_writer_member_text_opt(struct json_writer *w, const char *key, const char *value);

/**
 * @brief Ends writing. Every container opened must have been closed.
 * @returns the malloc'd NUL-terminated text (the caller frees it), its length in @p len; NULL
 *          after any failure (nothing to free then).
 */
char *json_writer_finish(struct json_writer *w, size_t *len);

#endif
