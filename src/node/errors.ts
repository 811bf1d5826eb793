// The storage errors the layers above the node handle (the server turns them into replies):
// they reach src/server through here, never from src/storage directly.
export { StorageIoError, WalFailedError } from "../storage/errors.ts";
