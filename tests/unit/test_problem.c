/* Unit tests for problem: RFC 9457 document shape, errors array, RFC 6901 pointers, titles. */
#include "problem.h"
#include "unit.h"

#include <jansson.h>
#include <string.h>

static void test_shape(void)
{
    json_t *p = problem_new(400, NULL, "The body has invalid fields");
    char *s;

    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_STR(json_string_value(json_object_get(p, "type")), "about:blank");
    CHECK_STR(json_string_value(json_object_get(p, "title")), "Bad Request");
    CHECK(json_is_integer(json_object_get(p, "status")));
    CHECK_INT(json_integer_value(json_object_get(p, "status")), 400);
    CHECK_STR(json_string_value(json_object_get(p, "detail")), "The body has invalid fields");
    CHECK(json_object_get(p, "errors") == NULL);
    CHECK_INT(problem_error_count(p), 0);

    /* Serialised in the order RFC 9457 lists the members, as clients read them in logs. */
    s = json_dumps(p, JSON_COMPACT);
    CHECK_STR(s, "{\"type\":\"about:blank\",\"title\":\"Bad Request\",\"status\":400,"
                 "\"detail\":\"The body has invalid fields\"}");
    free(s);
    json_decref(p);

    /* A given type is kept; no detail means no "detail" member (not null). */
    p = problem_new(503, "urn:pm:problem:kafka-unavailable", NULL);
    CHECK(p != NULL);
    CHECK_STR(json_string_value(json_object_get(p, "type")), "urn:pm:problem:kafka-unavailable");
    CHECK_STR(json_string_value(json_object_get(p, "title")), "Service Unavailable");
    CHECK_INT(json_integer_value(json_object_get(p, "status")), 503);
    CHECK(json_object_get(p, "detail") == NULL);
    CHECK_INT(json_object_size(p), 3);
    json_decref(p);

    /* An empty type string is treated as no type. */
    p = problem_new(404, "", NULL);
    CHECK_STR(json_string_value(json_object_get(p, "type")), "about:blank");
    json_decref(p);

    /* Details with quotes and newlines survive serialisation. */
    p = problem_new(415, NULL, "expected \"application/json\"\n");
    s = json_dumps(p, JSON_COMPACT);
    json_t *back = json_loads(s, 0, NULL);
    CHECK_STR(json_string_value(json_object_get(back, "detail")),
              "expected \"application/json\"\n");
    json_decref(back);
    free(s);
    json_decref(p);
}

static void test_errors(void)
{
    json_t *p = problem_new(400, "urn:pm:problem:invalid-body", "2 fields are invalid");
    json_t *errors, *e;

    problem_add_error(p, "/patient_id", "is required");
    CHECK_INT(problem_error_count(p), 1);
    problem_add_error(p, "/answers/0/link_id", "must be a string");
    problem_add_error(p, "", "body is not a JSON object");
    problem_add_error(p, NULL, NULL);
    CHECK_INT(problem_error_count(p), 4);

    errors = json_object_get(p, "errors");
    CHECK(json_is_array(errors));
    e = json_array_get(errors, 0);
    CHECK_STR(json_string_value(json_object_get(e, "pointer")), "/patient_id");
    CHECK_STR(json_string_value(json_object_get(e, "detail")), "is required");
    CHECK_INT(json_object_size(e), 2);
    e = json_array_get(errors, 1);
    CHECK_STR(json_string_value(json_object_get(e, "pointer")), "/answers/0/link_id");
    CHECK_STR(json_string_value(json_object_get(e, "detail")), "must be a string");
    e = json_array_get(errors, 2);
    CHECK_STR(json_string_value(json_object_get(e, "pointer")), "");
    e = json_array_get(errors, 3);
    CHECK_STR(json_string_value(json_object_get(e, "pointer")), "");
    CHECK(json_is_string(json_object_get(e, "detail")));

    /* The other members are untouched by adding errors. */
    CHECK_INT(json_integer_value(json_object_get(p, "status")), 400);
    CHECK_STR(json_string_value(json_object_get(p, "title")), "Bad Request");
    json_decref(p);

    /* Harmless on NULL, and the count of a document without errors is 0. */
    problem_add_error(NULL, "/x", "y");
    CHECK_INT(problem_error_count(NULL), 0);
}

static void test_pointers(void)
{
    char buf[64];

    CHECK_INT(problem_pointer_join(buf, sizeof(buf), "", "patient_id"), 0);
    CHECK_STR(buf, "/patient_id");
    CHECK_INT(problem_pointer_join(buf, sizeof(buf), NULL, "x"), 0);
    CHECK_STR(buf, "/x");
    CHECK_INT(problem_pointer_join(buf, sizeof(buf), "/recipient", "practitioner_id"), 0);
    CHECK_STR(buf, "/recipient/practitioner_id");

    /* RFC 6901: '~' becomes "~0" and '/' becomes "~1", in that order of meaning. */
    CHECK_INT(problem_pointer_join(buf, sizeof(buf), "", "a/b~c"), 0);
    CHECK_STR(buf, "/a~1b~0c");
    CHECK_INT(problem_pointer_join(buf, sizeof(buf), "/x", "~1"), 0);
    CHECK_STR(buf, "/x/~01");
    CHECK_INT(problem_pointer_join(buf, sizeof(buf), "", ""), 0);
    CHECK_STR(buf, "/");

    /* Array indexes, and extending a pointer in place. */
    CHECK_INT(problem_pointer_index(buf, sizeof(buf), "/answers", 0), 0);
    CHECK_STR(buf, "/answers/0");
    CHECK_INT(problem_pointer_join(buf, sizeof(buf), buf, "value_codes"), 0);
    CHECK_STR(buf, "/answers/0/value_codes");
    CHECK_INT(problem_pointer_index(buf, sizeof(buf), buf, 12), 0);
    CHECK_STR(buf, "/answers/0/value_codes/12");
    CHECK_INT(problem_pointer_index(buf, sizeof(buf), "", 18446744073709551615ULL), 0);
    CHECK_STR(buf, "/18446744073709551615");

    /* Too small: -1, and the buffer still holds a terminated prefix. */
    char small[9];
    CHECK_INT(problem_pointer_join(small, sizeof(small), "/abc", "def"), 0);
    CHECK_STR(small, "/abc/def");
    CHECK_INT(problem_pointer_join(small, sizeof(small), "/abc", "defg"), -1);
    CHECK_STR(small, "/abc/def");
    CHECK_INT(problem_pointer_join(small, sizeof(small), "/abc", "de~"), -1);
    CHECK_STR(small, "/abc/de");
    CHECK_INT(problem_pointer_join(small, sizeof(small), "/abcdefghij", "x"), -1);
    CHECK_STR(small, "/abcdefg");
    CHECK_INT(problem_pointer_index(small, sizeof(small), "/abc", 12345), -1);
    CHECK_INT(strlen(small) < sizeof(small), 1);
    CHECK_INT(problem_pointer_join(small, 0, "/a", "b"), -1);
}

static void test_titles(void)
{
    static const struct {
        int status;
        const char *title;
    } cases[] = {
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Content Too Large"},
        {415, "Unsupported Media Type"},
        {422, "Unprocessable Content"},
        {429, "Too Many Requests"},
        {500, "Internal Server Error"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {299, "Error"},
        {0, "Error"},
        {-1, "Error"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_STR(problem_status_title(cases[i].status), cases[i].title);
        json_t *p = problem_new(cases[i].status, NULL, NULL);
        CHECK_STR(json_string_value(json_object_get(p, "title")), cases[i].title);
        json_decref(p);
    }
}

int main(void)
{
    test_shape();
    test_errors();
    test_pointers();
    test_titles();
    return UNIT_DONE();
}
