// libsignal-protocol-c's crypto provider (signal_protocol.h, signal_crypto_provider): HMAC-SHA256,
// SHA-512 and AES-CBC/-CTR from OpenSSL, random bytes from libsodium.
#pragma once

struct signal_crypto_provider;

namespace wasentinel::signal {

/// The provider every Context installs; stateless, so one for the process.
const signal_crypto_provider& CryptoProvider();

}  // namespace wasentinel::signal
