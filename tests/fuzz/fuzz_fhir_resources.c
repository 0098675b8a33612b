/* libFuzzer target: pm-deliver's readers of Canvas resources (Communication checks, Patient
 * telecom/contacts). */
#include "deliver.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *const categories[] = {"ARI", "EMC"};
    struct deliver_recipient people[8];
    struct deliver_message msg;
    const char *reason = NULL;
    char phone[32], email[256];
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size, 0, &jerr);
    int rc;

    if (!j)
        return 0;
    rc = deliver_message_check(j, "b3084f7e884e4af2b7e23b1dca494abd", &msg, &reason, NULL);
    if (rc != 0 && !reason)
        abort(); /* a skip or a rejection always says why */
    if (rc == 0 && (!msg.content || !msg.communication_id[0]))
        abort();
    if (deliver_patient_phone(j, phone, sizeof(phone)) == 0 && phone[0] != '+')
        abort(); /* only E.164 numbers reach Twilio */
    deliver_patient_email(j, email, sizeof(email));
    deliver_patient_contacts(j, categories, 2, people, 8);
    json_decref(j);
    return 0;
}
