// The command as clients write it (ARCHITECTURE.md section 3): the object shape of the
// JSON contract, with account ids and amounts as decimal strings. Encoders take it;
// tests and benchmarks build it.

import { CommandType } from './command_layout';

/** credit: the second half of a transfer whose `to` lives on another partition (shaped like a deposit). */
export type SingleAmountTypeName = 'deposit' | 'withdraw' | 'freeze' | 'unfreeze' | 'credit';

export interface SingleAmountWireCommand {
  type: SingleAmountTypeName;
  tx_id: string;
  account: string;
  currency: string;
  amount: string;
}

export interface TransferWireCommand {
  type: 'transfer';
  tx_id: string;
  from: string;
  to: string;
  currency: string;
  amount: string;
}

export interface SettleWireLeg {
  account: string;
  currency: string;
  available: string;
  frozen: string;
}

export interface SettleWireCommand {
  type: 'settle';
  tx_id: string;
  account: string;
  legs: SettleWireLeg[];
}

export type WireCommand = SingleAmountWireCommand | TransferWireCommand | SettleWireCommand;

/** Wire type names by CommandType (index 0: unparseable). */
export const COMMAND_TYPE_NAMES: readonly string[] = ['', 'deposit', 'withdraw', 'freeze', 'unfreeze', 'transfer', 'settle', 'credit'];

/** CommandType of a wire type name, or Unparseable (0). */
export function commandTypeOfName(name: string): CommandType {
  const index = COMMAND_TYPE_NAMES.indexOf(name);
  return index > 0 ? (index as CommandType) : CommandType.Unparseable;
}

/** The contract's JSON text of a command, fields in the contract's order. */
export function encodeCommandJson(command: WireCommand): string {
  switch (command.type) {
    case 'transfer':
      return JSON.stringify({ type: command.type, tx_id: command.tx_id, from: command.from, to: command.to, currency: command.currency, amount: command.amount });
    case 'settle':
      return JSON.stringify({
        type: command.type,
        tx_id: command.tx_id,
        account: command.account,
        legs: command.legs.map((leg) => ({ account: leg.account, currency: leg.currency, available: leg.available, frozen: leg.frozen })),
      });
    default:
      return JSON.stringify({ type: command.type, tx_id: command.tx_id, account: command.account, currency: command.currency, amount: command.amount });
  }
}
