/* README.md, docs/operations.md and docs/http-api.md vs the variables each --help lists. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SRC_DIR  PM_TESTDATA_DIR "/../.."
#define MAX_VARS 96

static struct harness *h;

/* One variable as --help prints it. */
struct var {
    char name[64];
    char def[160]; /* "(unset)" when there is none */
    int secret;    /* --help says "(secret; or _FILE)" */
};

struct service {
    const char *bin;  /* "pm-ingest" */
    const char *word; /* how README's "service" column names it: "ingest" */
    struct var v[MAX_VARS];
    int n;
    int documented[MAX_VARS]; /* has a row in the reference tables being checked */
};

static struct service services[] = {{"pm-ingest", "ingest", {{"", "", 0}}, 0, {0}},
                                    {"pm-deliver", "deliver", {{"", "", 0}}, 0, {0}}};
#define N_SERVICES (sizeof(services) / sizeof(services[0]))

static int is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static const struct var *service_var(const struct service *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].name, name))
            return &s->v[i];
    return NULL;
}

static void trim(char *s)
{
    size_t n = strlen(s), i = 0;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    memmove(s, s + i, n - i + 1);
}

/* Reads "  NAME   help[ (secret; or _FILE)]" / "  <spaces> default: X" pairs from --help. */
static void help_parse(struct service *s, const char *text)
{
    const char *line = text;
    while (line && *line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > 2 && line[0] == ' ' && line[1] == ' ' && !strncmp(line + 2, "PM_", 3) &&
            s->n < MAX_VARS) {
            struct var *v = &s->v[s->n];
            size_t n = 0;
            const char *next = eol ? eol + 1 : NULL, *d;
            while (is_name_char(line[2 + n]) && n + 1 < sizeof(v->name)) {
                v->name[n] = line[2 + n];
                n++;
            }
            v->name[n] = '\0';
            {
                char copy[512];
                snprintf(copy, sizeof(copy), "%.*s", (int)len, line);
                v->secret = strstr(copy, "(secret; or _FILE)") != NULL;
            }
            d = next ? strstr(next, "default: ") : NULL;
            if (H_CHECKF(h, d && (!strchr(next, '\n') || d < strchr(next, '\n')),
                         "%s --help: no default line after %s", s->bin, v->name)) {
                const char *de = strchr(d, '\n');
                d += 9;
                snprintf(v->def, sizeof(v->def), "%.*s", (int)(de ? de - d : (long)strlen(d)), d);
                trim(v->def);
            }
            s->n++;
        }
        line = eol ? eol + 1 : NULL;
    }
}

static void help_read(struct service *s)
{
    const char *argv[] = {s->bin, "--help", NULL};
    struct harness_proc *p = harness_proc_start(h, s->bin, argv, NULL);
    char *out;
    if (!p)
        return;
    H_CHECKF(h, harness_proc_wait(p, 10000) == 0, "%s --help did not exit 0", s->bin);
    out = harness_proc_stdout(p);
    if (H_CHECKF(h, out != NULL, "%s --help printed nothing", s->bin))
        help_parse(s, out);
    free(out);
    /* A parser that finds nothing would make every check below vacuous. */
    H_CHECKF(h, s->n >= 10, "%s --help: only %d variables parsed", s->bin, s->n);
}

static char *doc_read(const char *rel)
{
    char path[512];
    char *text;
    snprintf(path, sizeof(path), "%s/%s", SRC_DIR, rel);
    text = harness_file_read(path, NULL);
    H_CHECKF(h, text != NULL, "cannot read %s", rel);
    return text;
}

/* 1 when @p name occurs in @p text as a whole variable name (not inside a longer one). */
static int mentions(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text ? strstr(text, name) : NULL; p; p = strstr(p + 1, name))
        if ((p == text || !is_name_char(p[-1])) && !is_name_char(p[n]))
            return 1;
    return 0;
}

/* The lines of the section that starts with the heading line @p heading (exact), up to the next
 * heading of the same or a higher level. @returns a malloc'd copy or NULL. */
static char *section(const char *text, const char *heading)
{
    const char *p = text, *start = NULL, *end;
    size_t level = 0;
    while (level < strlen(heading) && heading[level] == '#')
        level++;
    for (; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        size_t len = strcspn(p, "\n");
        if (len == strlen(heading) && !strncmp(p, heading, len)) {
            start = p + len;
            break;
        }
    }
    if (!start)
        return NULL;
    for (end = start; *end; end++) {
        if (end[-1] != '\n' || *end != '#')
            continue;
        size_t l = 0;
        while (end[l] == '#')
            l++;
        if (l <= level && end[l] == ' ')
            break;
    }
    {
        size_t n = (size_t)(end - start);
        char *copy = malloc(n + 1);
        if (copy) {
            memcpy(copy, start, n);
            copy[n] = '\0';
        }
        return copy;
    }
}

/* Splits a markdown table row "| a | b | c |" into trimmed cells. @returns the cell count. */
static int row_cells(const char *line, size_t len, char cells[][256], int max)
{
    int n = 0;
    size_t i = 0;
    if (!len || line[0] != '|')
        return 0;
    i = 1;
    while (i < len && n < max) {
        size_t j = i;
        while (j < len && line[j] != '|')
            j++;
        if (j >= len)
            break;
        snprintf(cells[n], 256, "%.*s", (int)(j - i), line + i);
        trim(cells[n]);
        n++;
        i = j + 1;
    }
    return n;
}

/* The variable names in a cell: every `PM_...` token. @returns how many. */
static int cell_names(const char *cell, char names[][64], int max)
{
    int n = 0;
    for (const char *p = strstr(cell, "PM_"); p && n < max; p = strstr(p + 1, "PM_")) {
        size_t l = 0;
        if (p > cell && is_name_char(p[-1]))
            continue;
        while (is_name_char(p[l]) && l + 1 < 64)
            l++;
        snprintf(names[n++], 64, "%.*s", (int)l, p);
    }
    return n;
}

/* A default cell as written: `value` → value; empty, "—" or "-" → "(unset)". */
static void cell_default(const char *cell, char *out, size_t len)
{
    size_t n = strlen(cell);
    if (!n || !strcmp(cell, "—") || !strcmp(cell, "-"))
        snprintf(out, len, "(unset)");
    else if (n >= 2 && cell[0] == '`' && cell[n - 1] == '`')
        snprintf(out, len, "%.*s", (int)(n - 2), cell + 1);
    else
        snprintf(out, len, "%s", cell);
}

/* The variable a secret's X_FILE form names, or NULL when @p name is no such form. */
static const struct var *file_form(const char *name)
{
    char base[64];
    size_t n = strlen(name);
    if (n <= 5 || strcmp(name + n - 5, "_FILE") != 0)
        return NULL;
    snprintf(base, sizeof(base), "%.*s", (int)(n - 5), name);
    for (size_t s = 0; s < N_SERVICES; s++) {
        const struct var *v = service_var(&services[s], base);
        if (v && v->secret)
            return v;
    }
    return NULL;
}

/* (a) README's configuration table: every variable exists in the --help of the service(s) its
 * row names, and a row's default is --help's. */
static void test_readme_table(const char *readme)
{
    char *sec = section(readme, "## Configuration");
    int rows = 0;

    if (!H_CHECKF(h, sec != NULL, "README.md: no \"## Configuration\" section"))
        return;
    for (const char *line = sec; line && *line;) {
        size_t len = strcspn(line, "\n");
        char cells[8][256], names[8][64], def[256];
        int nc = row_cells(line, len, cells, 8), nn;
        line = line[len] ? line + len + 1 : NULL;
        if (nc < 3 || !strncmp(cells[0], "---", 3) || !strcmp(cells[0], "variable"))
            continue;
        nn = cell_names(cells[0], names, 8);
        if (!H_CHECKF(h, nn > 0, "README.md configuration row without a variable: %s", cells[0]))
            continue;
        rows++;
        cell_default(cells[2], def, sizeof(def));
        for (int i = 0; i < nn; i++) {
            int found = 0;
            for (size_t s = 0; s < N_SERVICES; s++) {
                const struct var *v = service_var(&services[s], names[i]);
                int named = !strcmp(cells[1], "both") || !strcmp(cells[1], services[s].word);
                if (!named)
                    continue;
                H_CHECKF(h, v != NULL, "README.md: %s (service %s) is not in %s --help", names[i],
                         cells[1], services[s].bin);
                if (!v)
                    continue;
                found = 1;
                H_CHECKF(h, !strcmp(def, v->def),
                         "README.md: %s default \"%s\", but %s --help says \"%s\"", names[i], def,
                         services[s].bin, v->def);
            }
            H_CHECKF(h, found || file_form(names[i]),
                     "README.md: %s (service \"%s\") is read by no service", names[i], cells[1]);
        }
    }
    H_CHECKF(h, rows > 0, "README.md: the configuration table has no rows");
    free(sec);
}

/* (b) Every variable a service reads is mentioned in operations.md, http-api.md or README.md. */
static void test_all_mentioned(const char *ops, const char *api, const char *readme)
{
    for (size_t s = 0; s < N_SERVICES; s++)
        for (int i = 0; i < services[s].n; i++) {
            const char *name = services[s].v[i].name;
            H_CHECKF(h, mentions(ops, name) || mentions(api, name) || mentions(readme, name),
                     "%s reads %s, which no document mentions (docs/operations.md, "
                     "docs/http-api.md, README.md)",
                     services[s].bin, name);
        }
}

/* A reference table: `| `NAME` | default | meaning |` rows under @p heading. Every row's variable
 * is in the --help of each of @p svcs with that default (and names the X_FILE form when it is a
 * secret); the row is remembered in each service's documented[]. */
static void test_reference_table(const char *doc, const char *docname, const char *heading,
                                 struct service *const *svcs, int nsvcs)
{
    char *sec = section(doc, heading);
    int rows = 0;

    if (!H_CHECKF(h, sec != NULL, "%s: no \"%s\" section", docname, heading))
        return;
    for (const char *line = sec; line && *line;) {
        size_t len = strcspn(line, "\n");
        char cells[8][256], names[8][64], def[256], file[80];
        int nc = row_cells(line, len, cells, 8);
        line = line[len] ? line + len + 1 : NULL;
        if (nc < 3 || cells[0][0] != '`' || cell_names(cells[0], names, 8) != 1)
            continue; /* header, separator, or a row about several variables */
        rows++;
        cell_default(cells[1], def, sizeof(def));
        for (int s = 0; s < nsvcs; s++) {
            struct service *svc = svcs[s];
            const struct var *v = service_var(svc, names[0]);
            if (!H_CHECKF(h, v != NULL, "%s (%s): %s is not in %s --help", docname, heading,
                          names[0], svc->bin))
                continue;
            svc->documented[v - svc->v] = 1;
            H_CHECKF(h, !strcmp(def, v->def),
                     "%s (%s): %s default \"%s\", but %s --help says \"%s\"", docname, heading,
                     v->name, def, svc->bin, v->def);
            snprintf(file, sizeof(file), "%s_FILE", v->name);
            if (v->secret)
                H_CHECKF(h, mentions(cells[2], file) || mentions(cells[0], file),
                         "%s (%s): %s is a secret; its row should name %s", docname, heading,
                         v->name, file);
        }
    }
    H_CHECKF(h, rows > 0, "%s (%s): no variable rows", docname, heading);
    free(sec);
}

/* Every variable of @p svc's --help had a row in the tables checked since the last reset. */
static void test_reference_complete(struct service *svc, const char *docname)
{
    for (int i = 0; i < svc->n; i++)
        H_CHECKF(h, svc->documented[i],
                 "%s: %s (%s --help) has no row in the configuration "
                 "reference",
                 docname, svc->v[i].name, svc->bin);
    memset(svc->documented, 0, sizeof(svc->documented));
}

int main(void)
{
    char *readme, *ops, *api;

    h = harness_init("docs_config");
    for (size_t s = 0; s < N_SERVICES; s++)
        help_read(&services[s]);

    readme = doc_read("README.md");
    ops = doc_read("docs/operations.md");
    api = doc_read("docs/http-api.md");
    if (readme && ops && api) {
        test_readme_table(readme);
        test_all_mentioned(ops, api, readme);
        /* docs/operations.md holds the complete list: the variables both services read, then
         * each service's own. */
        struct service *both[] = {&services[0], &services[1]};
        test_reference_table(ops, "docs/operations.md", "### Both services", both, 2);
        test_reference_table(ops, "docs/operations.md", "### pm-ingest variables", both, 1);
        test_reference_table(ops, "docs/operations.md", "### pm-deliver variables", both + 1, 1);
        for (size_t s = 0; s < N_SERVICES; s++)
            test_reference_complete(&services[s], "docs/operations.md");
        /* docs/http-api.md's summary names some of pm-ingest's; those must agree. */
        test_reference_table(api, "docs/http-api.md", "## Configuration summary", both, 1);
    }
    free(readme);
    free(ops);
    free(api);
    return harness_finish(h);
}
