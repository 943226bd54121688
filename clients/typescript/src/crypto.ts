/**
 * End-to-end encryption for what the app stores: AES-256-GCM with WebCrypto. `encrypt` draws a
 * random 96-bit nonce for every message and puts it before the ciphertext (which ends with
 * GCM's 128-bit tag): `nonce (12 bytes) || ciphertext || tag (16 bytes)`. The server only ever
 * sees that.
 */

import { plain } from "./bytes.js";

const NONCE_BYTES = 12;
const ALGORITHM = { name: "AES-GCM", length: 256 } as const;

/** A new random AES-256-GCM key, extractable so that the app can keep it (`exportKey`). */
export function generateKey(): Promise<CryptoKey> {
  return globalThis.crypto.subtle.generateKey(ALGORITHM, true, ["encrypt", "decrypt"]);
}

/** The key's 32 raw bytes, for the app's keychain or for wrapping it to another device. */
export async function exportKey(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await globalThis.crypto.subtle.exportKey("raw", key));
}

/** A key from its 32 raw bytes. */
export function importKey(raw: Uint8Array, extractable = true): Promise<CryptoKey> {
  if (raw.byteLength !== 32) {
    return Promise.reject(new RangeError("an AES-256 key is 32 bytes"));
  }
  return globalThis.crypto.subtle.importKey("raw", plain(raw), ALGORITHM, extractable, [
    "encrypt",
    "decrypt",
  ]);
}

/** `nonce || AES-256-GCM(key, nonce, bytes)`, with a fresh random nonce. */
export async function encrypt(key: CryptoKey, bytes: Uint8Array): Promise<Uint8Array> {
  const nonce = globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const sealed = new Uint8Array(
    await globalThis.crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce }, key, plain(bytes)),
  );
  const out = new Uint8Array(NONCE_BYTES + sealed.byteLength);
  out.set(nonce, 0);
  out.set(sealed, NONCE_BYTES);
  return out;
}

/** The plaintext of what `encrypt` made; rejects if the bytes were altered or the key is not theirs. */
export async function decrypt(key: CryptoKey, bytes: Uint8Array): Promise<Uint8Array> {
  if (bytes.byteLength < NONCE_BYTES + 16) {
    throw new RangeError("too short to be AES-256-GCM output of encrypt()");
  }
  const nonce = plain(bytes.subarray(0, NONCE_BYTES));
  const sealed = plain(bytes.subarray(NONCE_BYTES));
  return new Uint8Array(
    await globalThis.crypto.subtle.decrypt({ name: "AES-GCM", iv: nonce }, key, sealed),
  );
}
