export { createAdiuvaClient } from "./client.js";
export type {
  AdiuvaClient,
  AdiuvaClientOptions,
  BackupMeta,
  Change,
  ChangeFeed,
  CreateOptions,
  RecordCreated,
  RecordMeta,
  RecordUpdated,
} from "./client.js";
export { AdiuvaError, StartOverError } from "./errors.js";
export type { ErrorBody } from "./errors.js";
export { memoryTokenStore } from "./tokens.js";
export type { TokenStore, Tokens } from "./tokens.js";
export type { AuthState, RetryOptions } from "./transport.js";
export type {
  ChatRequest,
  ChatResult,
  ChatSendOptions,
  WebSocketConstructor,
  WebSocketLike,
} from "./chat.js";
export * as crypto from "./crypto.js";
export { decrypt, encrypt, exportKey, generateKey, importKey } from "./crypto.js";
export { sha256Hex } from "./bytes.js";
export type { components, operations, paths } from "./schema.js";
