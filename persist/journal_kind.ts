// journal.kind: what a journal leg is, as a small code: 10 × command type + leg role.
//
//   command type (engine/command_layout.ts CommandType)   leg role
//     1 deposit    2 withdraw   3 freeze                   0  a leg on the command's own account
//     4 unfreeze   5 transfer   6 settle                      (deposit/withdraw/freeze/unfreeze/
//     7 credit                                                credit: `account`; transfer: `from`;
//                                                              settle: its user account)
//                                                          1  a leg on any other account
//
//   kind  meaning                                          kind  meaning
//    10   deposit: credit of the user                       50   transfer: debit of `from`
//    11   deposit: debit of external account 0              51   transfer: credit of `to`, or of
//    20   withdraw: debit of the user                             transit account 3 of the partition
//    21   withdraw: credit of external account 0                  when `to` lives on another one
//    30   freeze: available → frozen of the user            60   settle: leg of the settle's user
//    40   unfreeze: frozen → available of the user          61   settle: leg of a system account
//    70   credit: credit of the user (the crossing                or another user of the partition
//         transfer's `to`)
//    71   credit: debit of transit account 3 of the partition
//
// A transfer to oneself has two legs of kind 50 (both on the command's own account). A 51 leg
// on account 3 is the debit half of a transfer across partitions (its outcome is flagged
// OUTCOME_FLAG_CREDIT_OUT); the 70/71 pair of the credit on `to`'s partition finishes it. Codes
// are stored in the database: append only, never renumber.

export const JOURNAL_KIND_ROLE_OWN_ACCOUNT = 0;
export const JOURNAL_KIND_ROLE_OTHER_ACCOUNT = 1;

export function journalKind(commandType: number, legIsOnOwnAccount: boolean): number {
  return commandType * 10 + (legIsOnOwnAccount ? JOURNAL_KIND_ROLE_OWN_ACCOUNT : JOURNAL_KIND_ROLE_OTHER_ACCOUNT);
}
