// libsignal-protocol-c's crypto provider on OpenSSL (HMAC-SHA256, SHA-512, AES-CBC and -CTR)
// and libsodium (randomness). Each callback answers 0 or SG_ERR_UNKNOWN; libsignal frees the
// buffers it is given (signal_buffer_free).
#include "crypto_provider.h"

#include <openssl/evp.h>
#include <openssl/params.h>
#include <signal/signal_protocol.h>
#include <sodium.h>

#include <memory>
#include <vector>

namespace wasentinel::signal {
namespace {

int Random(uint8_t* data, size_t len, void*) {
  randombytes_buf(data, len);
  return 0;
}

struct Hmac {
  EVP_MAC_CTX* ctx = nullptr;
  ~Hmac() { EVP_MAC_CTX_free(ctx); }
};

// OpenSSL's HMAC, fetched from its provider once for the process (never freed).
EVP_MAC* HmacAlgorithm() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

int HmacInit(void** context, const uint8_t* key, size_t key_len, void*) {
  auto h = std::make_unique<Hmac>();
  if (!HmacAlgorithm()) return SG_ERR_UNKNOWN;
  h->ctx = EVP_MAC_CTX_new(HmacAlgorithm());
  if (!h->ctx) return SG_ERR_NOMEM;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(h->ctx, key, key_len, params) != 1) return SG_ERR_UNKNOWN;
  *context = h.release();
  return 0;
}

int HmacUpdate(void* context, const uint8_t* data, size_t len, void*) {
  return EVP_MAC_update(static_cast<Hmac*>(context)->ctx, data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

int HmacFinal(void* context, signal_buffer** output, void*) {
  uint8_t out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  if (EVP_MAC_final(static_cast<Hmac*>(context)->ctx, out, &len, sizeof(out)) != 1) {
    return SG_ERR_UNKNOWN;
  }
  *output = signal_buffer_create(out, len);
  return *output ? 0 : SG_ERR_NOMEM;
}

void HmacCleanup(void* context, void*) { delete static_cast<Hmac*>(context); }

int Sha512Init(void** context, void*) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return SG_ERR_NOMEM;
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return SG_ERR_UNKNOWN;
  }
  *context = ctx;
  return 0;
}

int Sha512Update(void* context, const uint8_t* data, size_t len, void*) {
  return EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(context), data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

int Sha512Final(void* context, signal_buffer** output, void*) {
  auto* ctx = static_cast<EVP_MD_CTX*>(context);
  uint8_t out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx, out, &len) != 1) return SG_ERR_UNKNOWN;
  // "prepare the context for reuse"
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) return SG_ERR_UNKNOWN;
  *output = signal_buffer_create(out, len);
  return *output ? 0 : SG_ERR_NOMEM;
}

void Sha512Cleanup(void* context, void*) { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(context)); }

const EVP_CIPHER* CipherFor(int cipher, size_t key_len) {
  if (cipher == SG_CIPHER_AES_CBC_PKCS5) {
    switch (key_len) {
      case 16:
        return EVP_aes_128_cbc();
      case 24:
        return EVP_aes_192_cbc();
      case 32:
        return EVP_aes_256_cbc();
      default:
        return nullptr;
    }
  }
  if (cipher == SG_CIPHER_AES_CTR_NOPADDING) {
    switch (key_len) {
      case 16:
        return EVP_aes_128_ctr();
      case 24:
        return EVP_aes_192_ctr();
      case 32:
        return EVP_aes_256_ctr();
      default:
        return nullptr;
    }
  }
  return nullptr;
}

int Crypt(signal_buffer** output, int cipher, const uint8_t* key, size_t key_len, const uint8_t* iv,
          size_t iv_len, const uint8_t* in, size_t in_len, bool encrypt) {
  const EVP_CIPHER* evp = CipherFor(cipher, key_len);
  if (!evp || iv_len != 16) return SG_ERR_INVAL;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return SG_ERR_NOMEM;
  std::vector<uint8_t> out(in_len + EVP_CIPHER_block_size(evp) + 16);
  int n = 0, tail = 0;
  const bool ok = EVP_CipherInit_ex(ctx, evp, nullptr, key, iv, encrypt ? 1 : 0) == 1 &&
                  EVP_CipherUpdate(ctx, out.data(), &n, in, static_cast<int>(in_len)) == 1 &&
                  EVP_CipherFinal_ex(ctx, out.data() + n, &tail) == 1;
  EVP_CIPHER_CTX_free(ctx);
  // A bad PKCS#5 padding after a MAC that verified: a malformed message from its sender.
  if (!ok) return encrypt ? SG_ERR_UNKNOWN : SG_ERR_INVALID_MESSAGE;
  *output = signal_buffer_create(out.data(), static_cast<size_t>(n + tail));
  return *output ? 0 : SG_ERR_NOMEM;
}

int Encrypt(signal_buffer** output, int cipher, const uint8_t* key, size_t key_len,
            const uint8_t* iv, size_t iv_len, const uint8_t* in, size_t in_len, void*) {
  return Crypt(output, cipher, key, key_len, iv, iv_len, in, in_len, true);
}

int Decrypt(signal_buffer** output, int cipher, const uint8_t* key, size_t key_len,
            const uint8_t* iv, size_t iv_len, const uint8_t* in, size_t in_len, void*) {
  return Crypt(output, cipher, key, key_len, iv, iv_len, in, in_len, false);
}

}  // namespace

const signal_crypto_provider& CryptoProvider() {
  static const signal_crypto_provider provider = {
      .random_func = Random,
      .hmac_sha256_init_func = HmacInit,
      .hmac_sha256_update_func = HmacUpdate,
      .hmac_sha256_final_func = HmacFinal,
      .hmac_sha256_cleanup_func = HmacCleanup,
      .sha512_digest_init_func = Sha512Init,
      .sha512_digest_update_func = Sha512Update,
      .sha512_digest_final_func = Sha512Final,
      .sha512_digest_cleanup_func = Sha512Cleanup,
      .encrypt_func = Encrypt,
      .decrypt_func = Decrypt,
      .user_data = nullptr,
  };
  return provider;
}

}  // namespace wasentinel::signal
