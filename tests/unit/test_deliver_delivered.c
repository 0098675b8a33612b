/* Unit tests for pm-deliver's memory of delivered channels (deliver_delivered_put / _by): the
 * event that delivered is recognised with its provider id, any other event is not. */
#include "deliver.h"
#include "unit.h"

#include <string.h>

int main(void)
{
    struct deliver_app app;
    const char *pid = "unset";
    char v[256];

    memset(&app, 0, sizeof(app));
    app.delivered = deliver_guard_new(16, 3600);
    CHECK(app.delivered != NULL);

    /* SMS delivered by event e-1 as Twilio message SM1. */
    deliver_delivered_put(&app, "c-1/sms", "e-1", "SM1");
    CHECK(deliver_guard_get(app.delivered, "c-1/sms", v, sizeof(v)) > 0);
    CHECK_INT(deliver_delivered_by(v, "e-1", &pid), 1);
    CHECK_STR(pid, "SM1");
    /* Another event for the same Communication, one whose id the first one's starts with, and
     * one that starts with it: not the same event. */
    CHECK_INT(deliver_delivered_by(v, "e-2", &pid), 0);
    CHECK(pid == NULL);
    CHECK_INT(deliver_delivered_by(v, "e-", &pid), 0);
    CHECK_INT(deliver_delivered_by(v, "e-10", &pid), 0);

    /* The webhook has no provider id; an event id with a line break in it still matches. */
    deliver_delivered_put(&app, "c-1/webhook", "e\n3", NULL);
    CHECK(deliver_guard_get(app.delivered, "c-1/webhook", v, sizeof(v)) > 0);
    pid = "unset";
    CHECK_INT(deliver_delivered_by(v, "e\n3", &pid), 1);
    CHECK(pid == NULL);
    CHECK_INT(deliver_delivered_by(v, "e", &pid), 0);

    /* A provider id that is not UTF-8 could not be published again in a result: the channel is
     * still remembered as delivered (a later event is skipped), just not by whom. */
    deliver_delivered_put(&app, "c-2/email", "e-4", "\xff\xfe");
    CHECK(deliver_guard_get(app.delivered, "c-2/email", v, sizeof(v)) >= 0);
    CHECK_INT(deliver_delivered_by(v, "e-4", &pid), 0);

    /* Nothing remembered for a channel that was not delivered. */
    CHECK_INT(deliver_guard_get(app.delivered, "c-1/email", v, sizeof(v)), -1);

    deliver_guard_free(app.delivered);
    return UNIT_DONE();
}
