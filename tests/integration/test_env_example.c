/* Checks .env.example and compose.yaml against what pm-ingest, pm-deliver and pm-sandbox read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* PM_TESTDATA_DIR is <repo>/tests/testdata. */
#define ENV_EXAMPLE  PM_TESTDATA_DIR "/../../.env.example"
#define COMPOSE_YAML PM_TESTDATA_DIR "/../../compose.yaml"

#define MAX_ITEMS 512
#define NAME_LEN  80
#define VALUE_LEN 256
#define LINE_LEN  1024

/* The binaries compose.yaml runs; each is also the name of its compose service. */
static const char *const binaries[] = {"pm-ingest", "pm-deliver", "pm-sandbox"};
#define NBINARIES (sizeof(binaries) / sizeof(binaries[0]))

/* One variable a binary's --help lists. */
struct help_var {
    size_t bin;
    char name[NAME_LEN];
    char def[VALUE_LEN]; /* "" when the default is "(unset)" or "(built in ...)" */
    int def_literal;     /* 0: no literal default ("(...)" or a "<placeholder>" URL) */
    int secret;          /* "(secret; or _FILE)": NAME_FILE is read too */
};

/* One assignment in .env.example: "NAME=value", or "# NAME=value" (commented out). */
struct env_line {
    char name[NAME_LEN];
    char value[VALUE_LEN];
    int commented;
    int described; /* the line above is a comment that is not itself an assignment */
    int line;
};

/* One ${NAME<op>default} substitution in compose.yaml. */
struct compose_sub {
    char name[NAME_LEN];
    char op[4]; /* "-", ":-", "" for ${NAME}, or another operator */
    char def[VALUE_LEN];
    int line;
};

/* One "PM_...: value" environment entry of a compose service. */
struct compose_env {
    char service[NAME_LEN];
    char name[NAME_LEN];
    char value[VALUE_LEN];
    int line;
};

struct model {
    struct help_var help[MAX_ITEMS];
    size_t nhelp;
    struct env_line env[MAX_ITEMS];
    size_t nenv;
    struct compose_sub subs[MAX_ITEMS];
    size_t nsubs;
    struct compose_env cenv[MAX_ITEMS];
    size_t ncenv;
    /* "NAME=value" strings of one --check-config run */
    char envbuf[MAX_ITEMS][NAME_LEN + VALUE_LEN + 2];
};

/* Copy [start, end) into @p out, truncated to fit and NUL-terminated. */
static void span_copy(const char *start, const char *end, char *out, size_t len)
{
    size_t n = (size_t)(end - start);
    if (n >= len)
        n = len - 1;
    memcpy(out, start, n);
    out[n] = '\0';
}

/* Length of an environment variable name at @p s ([A-Z][A-Z0-9_]*), 0 when there is none. */
static size_t var_name_len(const char *s)
{
    size_t n = 0;
    if (!(s[0] >= 'A' && s[0] <= 'Z'))
        return 0;
    while ((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_')
        n++;
    return n;
}

/* The next line of @p *cursor into @p out (without its newline); advances the cursor.
 * @returns 0, or -1 at the end of the text. */
static int next_line(const char **cursor, char *out, size_t len)
{
    const char *s = *cursor, *nl;
    if (!s || !*s)
        return -1;
    nl = strchr(s, '\n');
    span_copy(s, nl ? nl : s + strlen(s), out, len);
    *cursor = nl ? nl + 1 : s + strlen(s);
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ---- what the binaries read ----------------------------------------------------------------- */

/* Run "<bin> --help" and add every "  PM_..." entry with its "default: ..." line to @p m. */
static void help_parse(struct harness *h, struct model *m, size_t bin)
{
    const char *const argv[] = {binaries[bin], "--help", NULL};
    struct harness_proc *p = harness_proc_start(h, binaries[bin], argv, NULL);
    char line[LINE_LEN];
    const char *cur;
    char *out;
    size_t before = m->nhelp;
    struct help_var *last = NULL;

    if (!H_CHECK(h, p != NULL))
        return;
    H_CHECKF(h, harness_proc_wait(p, 10000) == 0, "%s --help did not exit 0", binaries[bin]);
    out = harness_proc_stdout(p);
    cur = out;
    while (next_line(&cur, line, sizeof(line)) == 0) {
        const char *t = line;
        size_t n;
        while (*t == ' ')
            t++;
        if (strncmp(line, "  PM_", 5) == 0 && (n = var_name_len(line + 2)) > 0) {
            if (!H_CHECKF(h, m->nhelp < MAX_ITEMS, "too many variables"))
                break;
            last = &m->help[m->nhelp++];
            memset(last, 0, sizeof(*last));
            last->bin = bin;
            span_copy(line + 2, line + 2 + n, last->name, sizeof(last->name));
            last->secret = strstr(line, "(secret; or _FILE)") != NULL;
        } else if (last && strncmp(t, "default: ", 9) == 0) {
            t += 9;
            last->def_literal = t[0] != '(' && !strchr(t, '<');
            if (t[0] != '(')
                snprintf(last->def, sizeof(last->def), "%s", t);
            last = NULL;
        }
    }
    free(out);
    /* Guards against a --help format change that would make every later check vacuous. */
    H_CHECKF(h, m->nhelp - before >= 10, "%s --help: only %zu variables parsed", binaries[bin],
             m->nhelp - before);
}

/* The --help entry of @p name for binary @p bin (any binary when bin == NBINARIES), or NULL. */
static const struct help_var *help_find(const struct model *m, size_t bin, const char *name)
{
    for (size_t i = 0; i < m->nhelp; i++)
        if ((bin == NBINARIES || m->help[i].bin == bin) && strcmp(m->help[i].name, name) == 0)
            return &m->help[i];
    return NULL;
}

/* The --help entry a variable belongs to: NAME itself, or the secret NAME of NAME_FILE. */
static const struct help_var *help_owner(const struct model *m, size_t bin, const char *name)
{
    const struct help_var *v = help_find(m, bin, name);
    char base[NAME_LEN];

    if (v || !ends_with(name, "_FILE"))
        return v;
    span_copy(name, name + strlen(name) - 5, base, sizeof(base));
    v = help_find(m, bin, base);
    return v && v->secret ? v : NULL;
}

/* ---- .env.example ---------------------------------------------------------------------------- */

static int env_parse(struct harness *h, struct model *m)
{
    char *text = harness_file_read(ENV_EXAMPLE, NULL);
    char line[LINE_LEN];
    const char *cur = text;
    int lineno = 0, prev_desc = 0;

    if (!H_CHECKF(h, text != NULL, "cannot read %s", ENV_EXAMPLE))
        return -1;
    while (next_line(&cur, line, sizeof(line)) == 0) {
        const char *s = line;
        int commented = 0;
        size_t n;

        lineno++;
        if (strncmp(s, "# ", 2) == 0 && var_name_len(s + 2) > 0) {
            s += 2;
            commented = 1;
        }
        n = var_name_len(s);
        if (n > 0 && s[n] == '=') {
            struct env_line *e;
            if (!H_CHECKF(h, m->nenv < MAX_ITEMS, "too many lines"))
                break;
            e = &m->env[m->nenv++];
            span_copy(s, s + n, e->name, sizeof(e->name));
            snprintf(e->value, sizeof(e->value), "%s", s + n + 1);
            e->commented = commented;
            e->described = prev_desc;
            e->line = lineno;
            prev_desc = 0;
        } else {
            prev_desc = line[0] == '#';
        }
    }
    free(text);
    H_CHECKF(h, m->nenv >= 30, ".env.example: only %zu variables parsed", m->nenv);
    return 0;
}

static const struct env_line *env_find(const struct model *m, const char *name)
{
    for (size_t i = 0; i < m->nenv; i++)
        if (strcmp(m->env[i].name, name) == 0)
            return &m->env[i];
    return NULL;
}

/* ---- compose.yaml ---------------------------------------------------------------------------- */

/* Record every ${NAME...} on @p line (not $${...}, which Compose leaves to the container shell). */
static void compose_subs_scan(struct harness *h, struct model *m, const char *line, int lineno)
{
    for (const char *s = strstr(line, "${"); s; s = strstr(s + 2, "${")) {
        struct compose_sub *c;
        const char *name = s + 2, *p = name, *close;

        if (s > line && s[-1] == '$')
            continue;
        while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
               *p == '_')
            p++;
        close = strchr(p, '}');
        if (!H_CHECKF(h, close && p > name, "compose.yaml:%d: malformed ${...}", lineno))
            return;
        if (!H_CHECKF(h, m->nsubs < MAX_ITEMS, "too many substitutions"))
            return;
        c = &m->subs[m->nsubs++];
        span_copy(name, p, c->name, sizeof(c->name));
        if (*p == '-') {
            snprintf(c->op, sizeof(c->op), "-");
            p++;
        } else if (p[0] == ':' && p[1] == '-') {
            snprintf(c->op, sizeof(c->op), ":-");
            p += 2;
        } else if (*p != '}') {
            span_copy(p, p + 1, c->op, sizeof(c->op));
        }
        span_copy(p, close, c->def, sizeof(c->def));
        c->line = lineno;
    }
}

/* Substitutions, and the "      PM_X: value" environment entries of each "  <service>:" block. */
static int compose_parse(struct harness *h, struct model *m)
{
    char *text = harness_file_read(COMPOSE_YAML, NULL);
    char line[LINE_LEN], service[NAME_LEN] = "";
    const char *cur = text;
    int lineno = 0, in_services = 0;

    if (!H_CHECKF(h, text != NULL, "cannot read %s", COMPOSE_YAML))
        return -1;
    while (next_line(&cur, line, sizeof(line)) == 0) {
        size_t n;

        lineno++;
        if (line[strspn(line, " ")] == '#')
            continue; /* YAML comments are not interpolated */
        compose_subs_scan(h, m, line, lineno);
        if (line[0] != ' ' && line[0] != '\0') {
            in_services = strcmp(line, "services:") == 0;
            service[0] = '\0';
        } else if (in_services && strncmp(line, "  ", 2) == 0 && line[2] != ' ' && line[2] != '#' &&
                   ends_with(line, ":")) {
            span_copy(line + 2, line + strlen(line) - 1, service, sizeof(service));
        } else if (service[0] && strncmp(line, "      PM_", 9) == 0 &&
                   (n = var_name_len(line + 6)) > 0 && strncmp(line + 6 + n, ": ", 2) == 0) {
            struct compose_env *e;
            if (!H_CHECKF(h, m->ncenv < MAX_ITEMS, "too many environment entries"))
                break;
            e = &m->cenv[m->ncenv++];
            snprintf(e->service, sizeof(e->service), "%s", service);
            span_copy(line + 6, line + 6 + n, e->name, sizeof(e->name));
            snprintf(e->value, sizeof(e->value), "%s", line + 6 + n + 2);
            e->line = lineno;
        }
    }
    free(text);
    H_CHECKF(h, m->ncenv >= 30, "compose.yaml: only %zu PM_ environment entries parsed", m->ncenv);
    return 0;
}

static const struct compose_env *compose_env_find(const struct model *m, const char *service,
                                                  const char *name)
{
    for (size_t i = 0; i < m->ncenv; i++)
        if (strcmp(m->cenv[i].service, service) == 0 && strcmp(m->cenv[i].name, name) == 0)
            return &m->cenv[i];
    return NULL;
}

/* ---- checks ---------------------------------------------------------------------------------- */

/* Every variable a binary reads (and NAME_FILE of its secrets) is documented in .env.example and
 * handed to the binary's compose service: a setting in .env reaches the process. */
static void check_documented_and_passed(struct harness *h, const struct model *m)
{
    for (size_t i = 0; i < m->nhelp; i++) {
        const struct help_var *v = &m->help[i];
        const char *svc = binaries[v->bin];
        char file_var[NAME_LEN + 8];

        H_CHECKF(h, env_find(m, v->name) != NULL, "%s reads %s: not in .env.example", svc, v->name);
        H_CHECKF(h, compose_env_find(m, svc, v->name) != NULL,
                 "%s reads %s: compose.yaml does not pass it to service %s", svc, v->name, svc);
        if (!v->secret)
            continue;
        snprintf(file_var, sizeof(file_var), "%s_FILE", v->name);
        H_CHECKF(h, env_find(m, file_var) != NULL, "%s reads secret %s: %s not in .env.example",
                 svc, v->name, file_var);
        H_CHECKF(h, compose_env_find(m, svc, file_var) != NULL,
                 "%s reads secret %s: compose.yaml does not pass %s", svc, v->name, file_var);
    }
}

/* No stale entries: every PM_ variable of .env.example is read by some binary; every other one
 * (compose only) is used by compose.yaml. Every variable is described, once. */
static void check_env_example(struct harness *h, const struct model *m)
{
    for (size_t i = 0; i < m->nenv; i++) {
        const struct env_line *e = &m->env[i];

        H_CHECKF(h, env_find(m, e->name) == e, ".env.example:%d: %s appears twice", e->line,
                 e->name);
        H_CHECKF(h, e->described, ".env.example:%d: %s has no comment line above it", e->line,
                 e->name);
        if (strncmp(e->name, "PM_", 3) == 0) {
            H_CHECKF(h, help_owner(m, NBINARIES, e->name) != NULL,
                     ".env.example:%d: %s is read by none of pm-ingest, pm-deliver, pm-sandbox",
                     e->line, e->name);
        } else {
            int used = 0;
            for (size_t j = 0; j < m->nsubs && !used; j++)
                used = strcmp(m->subs[j].name, e->name) == 0;
            H_CHECKF(h, used, ".env.example:%d: compose-only %s is not used by compose.yaml",
                     e->line, e->name);
        }
    }
}

/* A commented-out line shows the built-in default of every binary that reads it: its literal
 * default, or nothing when the default is "(unset)"/"(built in ...)". A _FILE line shows an
 * example path instead, and a "<placeholder>" default (derived URLs) has nothing to compare. */
static void check_commented_defaults(struct harness *h, const struct model *m)
{
    for (size_t i = 0; i < m->nenv; i++) {
        const struct env_line *e = &m->env[i];
        if (!e->commented || ends_with(e->name, "_FILE"))
            continue;
        for (size_t j = 0; j < m->nhelp; j++) {
            const struct help_var *v = &m->help[j];
            const char *want = v->def_literal ? v->def : "";
            if (strcmp(v->name, e->name) != 0 || (!v->def_literal && strchr(v->def, '<')))
                continue;
            H_CHECKF(h, strcmp(want, e->value) == 0,
                     ".env.example:%d: # %s=%s, but %s's default is \"%s\"", e->line, e->name,
                     e->value, binaries[v->bin], want);
        }
    }
}

/* Every ${NAME-default} of compose.yaml names a documented variable, uses "-" (an empty value
 * in .env stays empty: "unset" to the services), and defaults to what .env.example gives it:
 * its value, or empty when the line is commented out. A clean clone then runs exactly as
 * `cp .env.example .env`. */
static void check_compose_defaults(struct harness *h, const struct model *m)
{
    for (size_t i = 0; i < m->nsubs; i++) {
        const struct compose_sub *c = &m->subs[i];
        const struct env_line *e = env_find(m, c->name);
        const char *want;

        if (!H_CHECKF(h, e != NULL, "compose.yaml:%d: ${%s} is not in .env.example", c->line,
                      c->name))
            continue;
        H_CHECKF(h, strcmp(c->op, "-") == 0,
                 "compose.yaml:%d: ${%s%s...}: use ${%s-default} (a default, and an empty value "
                 "kept empty)",
                 c->line, c->name, c->op, c->name);
        want = e->commented ? "" : e->value;
        H_CHECKF(h, strcmp(c->def, want) == 0,
                 "compose.yaml:%d: ${%s-%s}, but .env.example:%d gives \"%s\"", c->line, c->name,
                 c->def, e->line, want);
    }
}

/* Each service's PM_ entries are "NAME: ${NAME-...}" and read by that binary (the topic job,
 * not one of the binaries, may pass any variable some binary reads). */
static void check_compose_entries(struct harness *h, const struct model *m)
{
    for (size_t i = 0; i < m->ncenv; i++) {
        const struct compose_env *c = &m->cenv[i];
        char want[NAME_LEN + 4];
        size_t bin = NBINARIES;

        snprintf(want, sizeof(want), "${%s-", c->name);
        H_CHECKF(h, strncmp(c->value, want, strlen(want)) == 0,
                 "compose.yaml:%d: %s: expected %s...}", c->line, c->name, want);
        for (size_t b = 0; b < NBINARIES; b++)
            if (strcmp(binaries[b], c->service) == 0)
                bin = b;
        H_CHECKF(h, help_owner(m, bin, c->name) != NULL,
                 "compose.yaml:%d: service %s is given %s, which %s does not read", c->line,
                 c->service, c->name, bin == NBINARIES ? "no binary" : c->service);
        H_CHECKF(h, compose_env_find(m, c->service, c->name) == c,
                 "compose.yaml:%d: %s given twice to %s", c->line, c->name, c->service);
    }
}

/* Each binary accepts the configuration compose gives it on a clean clone: every variable it
 * reads set (empty unless .env.example gives it a value), then --check-config. */
static void check_config_valid(struct harness *h, struct model *m, size_t bin)
{
    const char *envp[MAX_ITEMS + 1];
    const char *const argv[] = {binaries[bin], "--check-config", NULL};
    char pname[64];
    size_t n = 0;
    struct harness_proc *p;
    int st;

    for (size_t i = 0; i < m->nhelp && n + 2 < MAX_ITEMS; i++) {
        const struct help_var *v = &m->help[i];
        if (v->bin != bin)
            continue;
        for (int file = 0; file <= v->secret; file++) { /* NAME, then NAME_FILE of a secret */
            char name[NAME_LEN + 8];
            const struct env_line *e;

            snprintf(name, sizeof(name), "%s%s", v->name, file ? "_FILE" : "");
            e = env_find(m, name);
            snprintf(m->envbuf[n], sizeof(m->envbuf[n]), "%s=%s", name,
                     e && !e->commented ? e->value : "");
            envp[n] = m->envbuf[n];
            n++;
        }
    }
    envp[n] = NULL;
    snprintf(pname, sizeof(pname), "%s-check-config", binaries[bin]);
    p = harness_proc_start(h, pname, argv, envp);
    if (!H_CHECK(h, p != NULL))
        return;
    st = harness_proc_wait(p, 10000);
    if (!H_CHECKF(h, st == 0, "%s --check-config with compose's settings exited %d", binaries[bin],
                  st))
        harness_proc_dump(p, 20);
}

int main(void)
{
    struct harness *h = harness_init("env-example");
    struct model *m = calloc(1, sizeof(*m));

    if (!H_CHECK(h, m != NULL))
        return harness_finish(h);
    for (size_t b = 0; b < NBINARIES; b++)
        help_parse(h, m, b);
    if (env_parse(h, m) == 0 && compose_parse(h, m) == 0) {
        check_documented_and_passed(h, m);
        check_env_example(h, m);
        check_commented_defaults(h, m);
        check_compose_defaults(h, m);
        check_compose_entries(h, m);
        for (size_t b = 0; b < NBINARIES; b++)
            check_config_valid(h, m, b);
    }
    free(m);
    return harness_finish(h);
}
