/*
 * transfer.c — the smallest useful libpaycell program: connect, create two
 * accounts, move money, read the balances back. Built by `make` as
 * build/example-transfer and run by the integration tests.
 *
 *   cc -Iinclude examples/transfer.c build/libpaycell.a -lxxhash -o transfer
 *   ./transfer 127.0.0.1:3000
 */
#include <stdio.h>

#include "paycell.h"

int main(int argc, char **argv) {
    const char *addresses = argc > 1 ? argv[1] : "127.0.0.1:3000";
    pc_client_t *client;
    int rc = pc_client_open(addresses, NULL, &client);
    if (rc != PC_OK) {
        fprintf(stderr, "connect: %s\n", pc_strerror(rc));
        return 2;
    }

    pc_account_t accounts[2] = {
        {.id = 9001, .ledger = 156, .code = 1},
        {.id = 9002, .ledger = 156, .code = 1},
    };
    pc_create_result_t results[2];
    uint32_t failed = 0;
    rc = pc_client_create_accounts(client, accounts, 2, results, &failed);
    for (uint32_t i = 0; rc == PC_OK && i < failed; i++) /* "exists" on a second run is fine */
        printf("account %u: %s\n", results[i].index, pc_account_result_name(results[i].result));

    pc_transfer_t transfer = {
        .id = 424242,
        .debit_account_id = 9001,
        .credit_account_id = 9002,
        .amount = 1999, /* 19.99 in cents */
        .ledger = 156,
        .code = 1,
    };
    if (rc == PC_OK) rc = pc_client_create_transfers(client, &transfer, 1, results, &failed);
    if (rc == PC_OK)
        printf("transfer 424242: %s\n",
               pc_transfer_result_name(failed ? results[0].result : PC_TRANSFER_RESULT_created));

    pc_u128 ids[2] = {9001, 9002};
    uint32_t found = 0;
    if (rc == PC_OK) rc = pc_client_lookup_accounts(client, ids, 2, accounts, &found);
    for (uint32_t i = 0; rc == PC_OK && i < found; i++)
        printf("account %llu: debits %llu credits %llu\n", (unsigned long long)accounts[i].id,
               (unsigned long long)accounts[i].debits_posted,
               (unsigned long long)accounts[i].credits_posted);
    pc_client_close(client);
    if (rc != PC_OK) fprintf(stderr, "error: %s (%s)\n", pc_strerror(rc), pc_err_name(rc));
    return rc == PC_OK ? 0 : 2;
}
