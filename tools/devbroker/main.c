/* pm-devbroker: librdkafka's mock cluster in a process of its own (placeholder until implemented). */
int main(void)
{
    return 1;
}
