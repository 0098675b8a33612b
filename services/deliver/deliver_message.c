/* Staff messages (canvas.message.v1): Communication, skip rules, Patient, then each channel once.
 */
#include "deliver.h"

#include "fhir.h"
#include "fhir_ref.h"
#include "http_client.h"
#include "json_text.h"
#include "webhook_sig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONTACTS 15 /* bit 0 is the patient, bits 1.. the contacts */

enum ch_state { CH_PENDING = 0, CH_DELIVERED, CH_SKIPPED, CH_FAILED };

/* What survives between attempts of one event: each channel succeeds at most once, and within
 * sms/email each recipient is sent to at most once. */
struct msg_state {
    enum ch_state ch[CHANNEL_COUNT];
    unsigned sent[CHANNEL_COUNT];
    char provider_id[CHANNEL_COUNT][96];
    char error[CHANNEL_COUNT][200];
    json_t *comm; /* the Communication once read: retries do not read it again */
};

/* The outcome of one channel in this attempt. */
struct ch_result {
    enum deliver_send send;
    long retry_after_ms;
    char error[200];
};

/* Everything one attempt needs, borrowed from the event and the resources read. */
struct msg_ctx {
    struct deliver_app *app;
    struct consumer_event *ev;
    struct msg_state *st;
    struct deliver_message msg;
    char *text;
    const char *html;
    struct deliver_recipient people[MAX_CONTACTS + 1]; /* [0] the patient, then contacts */
    size_t npeople;
};

static void msg_url_join(char *out, size_t len, const char *base, const char *path)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(out, len, "%.*s%s", (int)bl, base, path);
}

static void msg_note(struct ch_result *r, long status, const struct http_reply *rep,
                     const char *what)
{
    r->send = deliver_classify(status);
    r->retry_after_ms = rep ? http_reply_retry_after_ms(rep) : -1;
    if (status == 0)
        snprintf(r->error, sizeof(r->error), "%s: %s", what, rep ? rep->error : "no answer");
    else
        snprintf(r->error, sizeof(r->error), "%s: HTTP %ld", what, status);
}

/* ---- webhook ---- */

static void msg_send_webhook(struct msg_ctx *m, struct ch_result *r)
{
    const struct deliver_config *cfg = m->app->cfg;
    struct http_reply rep = {0};
    size_t s_len = 0;
    char *s = deliver_webhook_body(&m->msg, m->text, m->people + 1, m->npeople - 1, &s_len);
    char sig[128], h_id[128], h_ts[64], h_sig[160];
    long long ts = (long long)time(NULL);

    if (!s || webhook_sig_sign(&cfg->webhook_key, m->msg.communication_id, ts, s, s_len, sig,
                               sizeof(sig)) != 0) {
        r->send = SEND_TRANSIENT;
        r->retry_after_ms = -1;
        snprintf(r->error, sizeof(r->error), "webhook: cannot build the request");
        free(s);
        return;
    }
    /* webhook-id is the Communication id: stable across retries and duplicate notifications,
     * so the clinic's receiver can drop repeats. */
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", m->msg.communication_id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", ts);
    snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig);
    const char *headers[] = {"Content-Type: application/json", h_id, h_ts, h_sig, NULL};
    struct http_call call = {.method = "POST",
                             .url = cfg->webhook_url,
                             .headers = headers,
                             .body = s,
                             .body_len = s_len,
                             .target = "webhook"};
    http_client_do(m->app->http, &call, &rep);
    msg_note(r, rep.status, &rep, "webhook");
    http_reply_free(&rep);
    free(s);
}

/* ---- Twilio ---- */

static void msg_send_sms(struct msg_ctx *m, const char *to, struct ch_result *r, char *sid,
                         size_t sidlen)
{
    const struct deliver_config *cfg = m->app->cfg;
    struct http_reply rep = {0};
    char url[512], path[256];
    char *form = deliver_twilio_form(to, cfg->twilio_from, m->text);
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded",
                             "Accept: application/json", NULL};

    if (!form) {
        r->send = SEND_TRANSIENT;
        r->retry_after_ms = -1;
        snprintf(r->error, sizeof(r->error), "sms: out of memory");
        return;
    }
    snprintf(path, sizeof(path), "/2010-04-01/Accounts/%s/Messages.json", cfg->twilio_sid);
    msg_url_join(url, sizeof(url), cfg->twilio_api_url, path);
    struct http_call call = {.method = "POST",
                             .url = url,
                             .headers = headers,
                             .body = form,
                             .body_len = strlen(form),
                             .basic_user = cfg->twilio_sid,
                             .basic_password = cfg->twilio_token,
                             .target = "twilio"};
    http_client_do(m->app->http, &call, &rep);
    msg_note(r, rep.status, &rep, "sms");
    if (rep.status) {
        json_t *j = json_loadb(rep.body, rep.body_len, 0, NULL);
        if (r->send == SEND_OK) {
            const char *v = json_string_value(json_object_get(j, "sid"));
            snprintf(sid, sidlen, "%s", v ? v : "");
        } else if (json_is_integer(json_object_get(j, "code"))) {
            /* Twilio's "message" can quote the phone number: only its code is kept. */
            snprintf(r->error, sizeof(r->error), "sms: Twilio HTTP %ld code %lld", rep.status,
                     (long long)json_integer_value(json_object_get(j, "code")));
        }
        json_decref(j);
    }
    http_reply_free(&rep);
    free(form);
}

/* ---- SendGrid ---- */

static void msg_send_email(struct msg_ctx *m, const char *to, struct ch_result *r, char *id,
                           size_t idlen)
{
    const struct deliver_config *cfg = m->app->cfg;
    struct http_reply rep = {0};
    char url[512], auth[600];
    json_t *body =
        deliver_sendgrid_body(to, cfg->sendgrid_from, cfg->email_subject, m->text, m->html);
    char *s = body ? json_text_dump(body, JSON_COMPACT, NULL) : NULL;

    json_decref(body);
    if (!s) {
        r->send = SEND_TRANSIENT;
        r->retry_after_ms = -1;
        snprintf(r->error, sizeof(r->error), "email: out of memory");
        return;
    }
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", cfg->sendgrid_key);
    const char *headers[] = {"Content-Type: application/json", auth, NULL};
    msg_url_join(url, sizeof(url), cfg->sendgrid_api_url, "/v3/mail/send");
    struct http_call call = {.method = "POST",
                             .url = url,
                             .headers = headers,
                             .body = s,
                             .body_len = strlen(s),
                             .target = "sendgrid"};
    http_client_do(m->app->http, &call, &rep);
    msg_note(r, rep.status, &rep, "email");
    if (r->send == SEND_OK && http_reply_header(&rep, "X-Message-Id", id, idlen) != 0)
        id[0] = '\0';
    /* SendGrid's 429 says when to come back in X-RateLimit-Reset (epoch seconds). */
    if (rep.status == 429 && r->retry_after_ms < 0) {
        char reset[32];
        if (http_reply_header(&rep, "X-RateLimit-Reset", reset, sizeof(reset)) == 0) {
            long long at = strtoll(reset, NULL, 10), now = (long long)time(NULL);
            if (at > now && at - now < 3600)
                r->retry_after_ms = (long)((at - now) * 1000);
        }
    }
    memset(auth, 0, sizeof(auth));
    http_reply_free(&rep);
    free(s);
}

/* ---- per channel ---- */

/* Sends on sms or email to every recipient not yet sent to. */
static enum ch_state msg_fan_out(struct msg_ctx *m, enum deliver_channel ch,
                                 struct ch_result *worst)
{
    struct msg_state *st = m->st;
    int any_address = 0, pending = 0, failed = 0;

    for (size_t i = 0; i < m->npeople; i++) {
        const char *addr = ch == CHANNEL_SMS ? m->people[i].phone : m->people[i].email;
        struct ch_result r = {SEND_OK, -1, ""};
        char pid[96] = "";

        if (!addr[0])
            continue;
        any_address = 1;
        if (st->sent[ch] & (1u << i))
            continue;
        if (ch == CHANNEL_SMS)
            msg_send_sms(m, addr, &r, pid, sizeof(pid));
        else
            msg_send_email(m, addr, &r, pid, sizeof(pid));
        if (r.send == SEND_OK) {
            st->sent[ch] |= 1u << i;
            if (!st->provider_id[ch][0])
                snprintf(st->provider_id[ch], sizeof(st->provider_id[ch]), "%s", pid);
            continue;
        }
        if (i > 0) { /* name which recipient, by position only */
            char e[sizeof(r.error)];
            snprintf(e, sizeof(e), "%s (contact %zu)", r.error, i);
            snprintf(r.error, sizeof(r.error), "%s", e);
        }
        if (r.send == SEND_TRANSIENT) {
            pending = 1;
            if (r.retry_after_ms > worst->retry_after_ms)
                worst->retry_after_ms = r.retry_after_ms;
        } else {
            failed = 1;
        }
        snprintf(worst->error, sizeof(worst->error), "%s", r.error);
    }
    if (!any_address)
        return CH_SKIPPED;
    return pending ? CH_PENDING : failed ? CH_FAILED : CH_DELIVERED;
}

/* @p dedup_key: the app->delivered key, on "delivered" results only (read back at start). */
static void msg_publish(struct consumer_event *ev, enum deliver_channel ch, const char *outcome,
                        const char *reason, const char *provider_id, const char *dedup_key)
{
    consumer_publish_result_keyed(ev, "message", deliver_channel_name(ch), outcome, reason,
                                  provider_id && *provider_id ? provider_id : NULL, dedup_key);
}

static void msg_state_free(void *p)
{
    struct msg_state *st = p;
    if (st)
        json_decref(st->comm);
    free(st);
}

/* Reads a resource through the Patient cache. @returns a new reference or NULL (err filled). */
static json_t *msg_patient(struct deliver_app *app, const char *id, struct fhir_error *err)
{
    char key[96];
    json_t *p;
    snprintf(key, sizeof(key), "Patient/%s", id);
    p = deliver_cache_get(app->patients, key);
    if (p)
        return p;
    p = fhir_read(app->fhir, "Patient", id, err);
    if (p)
        deliver_cache_put(app->patients, key, p);
    return p;
}

static void msg_fhir_failure(struct consumer_outcome *out, const struct fhir_error *err)
{
    out->verdict = err->kind == FHIR_TRANSIENT ? CONSUMER_RETRY : CONSUMER_PERMANENT;
    out->retry_after_ms = err->retry_after_ms;
    snprintf(out->error, sizeof(out->error), "%s", err->message);
}

void deliver_message_handle(void *arg, struct consumer_event *ev, struct consumer_outcome *out)
{
    struct deliver_app *app = arg;
    const struct deliver_config *cfg = app->cfg;
    json_t *data = ev->ce->data;
    const char *comm_id = json_string_value(json_object_get(data, "communication_id"));
    const char *patient_id = json_string_value(json_object_get(data, "patient_id"));
    json_t *embedded = json_object_get(data, "communication");
    json_t *comm = NULL, *patient = NULL;
    struct msg_ctx m;
    struct fhir_error ferr;
    const char *reason = NULL;
    int pending = 0, failed = 0, delivered = 0, need_patient = 0, rc;
    char key[160];

    memset(&m, 0, sizeof(m));
    m.app = app;
    m.ev = ev;
    if (!fhir_id_valid(comm_id) || !fhir_id_valid(patient_id) ||
        (embedded && !json_is_object(embedded))) {
        out->verdict = CONSUMER_INVALID;
        snprintf(out->error, sizeof(out->error),
                 "data.communication_id and data.patient_id must be FHIR ids and "
                 "data.communication, when present, an object");
        return;
    }
    if (!ev->state) {
        ev->state = calloc(1, sizeof(struct msg_state));
        ev->state_free = msg_state_free;
        if (!ev->state) {
            out->verdict = CONSUMER_RETRY;
            snprintf(out->error, sizeof(out->error), "out of memory");
            return;
        }
    }
    m.st = ev->state;

    /* Several notifications arrive per Canvas message: a channel that already delivered this
     * Communication is not used again. */
    for (int i = 0; i < cfg->nchannels; i++) {
        enum deliver_channel ch = cfg->channels[i];
        char seen[1024];
        long seen_len;
        const char *by; /* provider id of the earlier delivery by this same event */
        if (m.st->ch[ch] != CH_PENDING)
            continue;
        snprintf(key, sizeof(key), "%s/%s", comm_id, deliver_channel_name(ch));
        seen_len = deliver_guard_get(app->delivered, key, seen, sizeof(seen));
        /* A record cut short (an event id of some 900 bytes) cannot name this event: skipped. */
        if (seen_len >= 0 && seen_len < (long)sizeof(seen) &&
            deliver_delivered_by(seen, ev->ce->id, &by)) {
            /* This very event delivered it (handled again after a restart or a rebalance, or
             * redriven): the same fact under the same result id, "delivered" with the same
             * provider_id, not a "skipped" that would contradict it. */
            m.st->ch[ch] = CH_DELIVERED;
            msg_publish(ev, ch, "delivered", NULL, by, key);
            delivered = 1;
        } else if (seen_len >= 0) {
            m.st->ch[ch] = CH_SKIPPED;
            msg_publish(ev, ch, "skipped", "already delivered", NULL, NULL);
        } else {
            pending = 1;
        }
    }
    if (!pending) {
        out->verdict = CONSUMER_DONE;
        out->label = delivered ? "delivered" : "skipped";
        return;
    }

    if (embedded) {
        comm = json_incref(embedded);
    } else if (m.st->comm) {
        comm = json_incref(m.st->comm);
    } else if (!(comm = fhir_read(app->fhir, "Communication", comm_id, &ferr))) {
        msg_fhir_failure(out, &ferr);
        return;
    } else {
        m.st->comm = json_incref(comm);
    }
    rc = deliver_message_check(comm, patient_id, &m.msg, &reason, &m.text);
    if (rc != 0) {
        if (rc < 0) {
            out->verdict = embedded ? CONSUMER_INVALID : CONSUMER_PERMANENT;
            snprintf(out->error, sizeof(out->error), "Communication %s: %s", comm_id, reason);
            goto out;
        }
        for (int i = 0; i < cfg->nchannels; i++) {
            enum deliver_channel ch = cfg->channels[i];
            if (m.st->ch[ch] == CH_PENDING) {
                m.st->ch[ch] = CH_SKIPPED;
                msg_publish(ev, ch, "skipped", reason, NULL, NULL);
            }
        }
        log_info("message skipped", LOG_S("event_id", ev->ce->id),
                 LOG_S("communication_id", comm_id), LOG_S("reason", reason));
        out->verdict = CONSUMER_DONE;
        out->label = "skipped";
        goto out;
    }
    m.html = deliver_is_html(m.msg.content) ? m.msg.content : NULL;
    if (!m.text) {
        out->verdict = CONSUMER_RETRY;
        snprintf(out->error, sizeof(out->error), "out of memory");
        goto out;
    }

    for (int i = 0; i < cfg->nchannels; i++) {
        enum deliver_channel ch = cfg->channels[i];
        if (m.st->ch[ch] == CH_PENDING && (ch != CHANNEL_WEBHOOK || cfg->ncontact_categories > 0))
            need_patient = 1;
    }
    m.npeople = 1;
    if (need_patient) {
        patient = msg_patient(app, patient_id, &ferr);
        if (!patient) {
            msg_fhir_failure(out, &ferr);
            goto out;
        }
        deliver_patient_phone(patient, m.people[0].phone, sizeof(m.people[0].phone));
        deliver_patient_email(patient, m.people[0].email, sizeof(m.people[0].email));
        m.npeople += deliver_patient_contacts(patient, cfg->contact_categories,
                                              cfg->ncontact_categories, m.people + 1, MAX_CONTACTS);
    }

    out->retry_after_ms = -1;
    for (int i = 0; i < cfg->nchannels; i++) {
        enum deliver_channel ch = cfg->channels[i];
        struct ch_result r = {SEND_OK, -1, ""};
        enum ch_state now;

        if (m.st->ch[ch] != CH_PENDING)
            continue;
        if (ch == CHANNEL_WEBHOOK) {
            msg_send_webhook(&m, &r);
            now = r.send == SEND_OK          ? CH_DELIVERED
                  : r.send == SEND_TRANSIENT ? CH_PENDING
                                             : CH_FAILED;
        } else {
            now = msg_fan_out(&m, ch, &r);
        }
        m.st->ch[ch] = now;
        if (now == CH_DELIVERED) {
            snprintf(key, sizeof(key), "%s/%s", comm_id, deliver_channel_name(ch));
            deliver_delivered_put(app, key, ev->ce->id, m.st->provider_id[ch]);
            msg_publish(ev, ch, "delivered", NULL, m.st->provider_id[ch], key);
            log_info("message delivered", LOG_S("event_id", ev->ce->id),
                     LOG_S("communication_id", comm_id), LOG_S("patient_id", patient_id),
                     LOG_S("channel", deliver_channel_name(ch)),
                     LOG_S("provider_id", m.st->provider_id[ch][0] ? m.st->provider_id[ch] : NULL));
        } else if (now == CH_SKIPPED) {
            msg_publish(ev, ch, "skipped",
                        ch == CHANNEL_SMS ? "no consented phone number"
                                          : "no consented email address",
                        NULL, NULL);
        } else {
            snprintf(m.st->error[ch], sizeof(m.st->error[ch]), "%s", r.error);
            if (r.retry_after_ms > out->retry_after_ms)
                out->retry_after_ms = r.retry_after_ms;
        }
    }

    /* The verdict of this attempt over all channels: any still pending → retry; else any that
     * failed for good → DLQ; else done. The error names each unfinished channel. */
    out->error[0] = '\0';
    pending = 0;
    for (int i = 0; i < cfg->nchannels; i++) {
        enum deliver_channel ch = cfg->channels[i];
        size_t used = strlen(out->error);
        if (m.st->ch[ch] == CH_PENDING || m.st->ch[ch] == CH_FAILED)
            snprintf(out->error + used, sizeof(out->error) - used, "%s%s", used ? "; " : "",
                     m.st->error[ch]);
        pending |= m.st->ch[ch] == CH_PENDING;
        delivered |= m.st->ch[ch] == CH_DELIVERED;
        failed |= m.st->ch[ch] == CH_FAILED;
    }

    if (pending) {
        out->verdict = CONSUMER_RETRY;
    } else if (failed) {
        out->verdict = CONSUMER_PERMANENT;
    } else {
        out->verdict = CONSUMER_DONE;
        out->label = delivered ? "delivered" : "skipped";
    }
out:
    free(m.text);
    json_decref(patient);
    json_decref(comm);
}

void deliver_message_failed(void *arg, struct consumer_event *ev, const char *error_class,
                            const char *error)
{
    struct deliver_app *app = arg;
    struct msg_state *st = ev->state;
    (void)error_class;

    /* Every channel that did not finish gets its "failed" result, with its own error. */
    for (int i = 0; i < app->cfg->nchannels; i++) {
        enum deliver_channel ch = app->cfg->channels[i];
        if (st && st->ch[ch] != CH_PENDING && st->ch[ch] != CH_FAILED)
            continue;
        msg_publish(ev, ch, "failed", st && st->error[ch][0] ? st->error[ch] : error, NULL, NULL);
    }
}
