#include "crypto.h"

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <sodium.h>

#include <cstring>
#include <memory>

namespace wasentinel::wa {
namespace {

void EnsureSodium() {
  // sodium_init is idempotent and thread-safe; it only needs to run before the first call.
  static const bool ok = sodium_init() >= 0;
  if (!ok) std::abort();
}

void Clamp(uint8_t* k) {
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
}

// Maps a Montgomery u-coordinate to the Edwards y-coordinate: y = (u - 1) / (u + 1) mod p.
bool MontgomeryToEdwardsY(const uint8_t u_le[32], uint8_t y_le[32]) {
  uint8_t u_be[32];
  for (int i = 0; i < 32; ++i) u_be[i] = u_le[31 - i];
  u_be[0] &= 0x7f;
  std::unique_ptr<BN_CTX, decltype(&BN_CTX_free)> ctx(BN_CTX_new(), BN_CTX_free);
  auto bn = [] { return std::unique_ptr<BIGNUM, decltype(&BN_free)>(BN_new(), BN_free); };
  auto p = bn(), u = bn(), num = bn(), den = bn(), inv = bn(), y = bn(), one = bn();
  // p = 2^255 - 19
  BN_set_bit(p.get(), 255);
  BN_sub_word(p.get(), 19);
  BN_one(one.get());
  BN_bin2bn(u_be, 32, u.get());
  BN_mod_sub(num.get(), u.get(), one.get(), p.get(), ctx.get());
  BN_mod_add(den.get(), u.get(), one.get(), p.get(), ctx.get());
  if (BN_is_zero(den.get())) return false;
  if (BN_mod_inverse(inv.get(), den.get(), p.get(), ctx.get()) == nullptr) return false;
  BN_mod_mul(y.get(), num.get(), inv.get(), p.get(), ctx.get());
  uint8_t y_be[32];
  if (BN_bn2binpad(y.get(), y_be, 32) != 32) return false;
  for (int i = 0; i < 32; ++i) y_le[i] = y_be[31 - i];
  return true;
}

}  // namespace

KeyPair KeyPair::Generate() {
  EnsureSodium();
  KeyPair kp;
  randombytes_buf(kp.priv.data(), kp.priv.size());
  Clamp(kp.priv.data());
  crypto_scalarmult_base(kp.pub.data(), kp.priv.data());
  return kp;
}

absl::StatusOr<KeyPair> KeyPair::FromPrivate(ByteView priv) {
  EnsureSodium();
  if (priv.size() != 32) return absl::InvalidArgumentError("an X25519 private key is 32 bytes");
  KeyPair kp;
  std::memcpy(kp.priv.data(), priv.data(), 32);
  crypto_scalarmult_base(kp.pub.data(), kp.priv.data());
  return kp;
}

absl::StatusOr<std::array<uint8_t, 32>> SharedSecret(const std::array<uint8_t, 32>& priv,
                                                     ByteView pub) {
  EnsureSodium();
  if (pub.size() != 32) return absl::InvalidArgumentError("an X25519 public key is 32 bytes");
  std::array<uint8_t, 32> out{};
  if (crypto_scalarmult(out.data(), priv.data(), pub.data()) != 0) {
    return absl::InvalidArgumentError("X25519 with a small-order public key");
  }
  return out;
}

std::array<uint8_t, 32> Sha256(std::initializer_list<ByteView> parts) {
  std::array<uint8_t, 32> out{};
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  for (ByteView p : parts) EVP_DigestUpdate(ctx.get(), p.data(), p.size());
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), out.data(), &len);
  return out;
}

std::array<uint8_t, 32> HmacSha256(ByteView key, ByteView message) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), message.data(), message.size(),
       out.data(), &len);
  return out;
}

Bytes Hkdf(ByteView ikm, ByteView salt, ByteView info, size_t length) {
  Bytes out(length);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr), EVP_PKEY_CTX_free);
  // An empty salt means a zero-filled salt of hash length (RFC 5869 §2.2); OpenSSL wants it
  // spelled out.
  static const uint8_t kZeroSalt[32] = {};
  ByteView s = salt.empty() ? ByteView(kZeroSalt, 32) : salt;
  size_t len = length;
  if (EVP_PKEY_derive_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), s.data(), static_cast<int>(s.size())) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), ikm.empty() ? kZeroSalt : ikm.data(),
                                 static_cast<int>(ikm.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), info.data(), static_cast<int>(info.size())) <= 0 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) <= 0 || len != length) {
    std::abort();  // only fails on allocation failure or misuse
  }
  return out;
}

Bytes Pbkdf2Sha256(std::string_view password, ByteView salt, int iterations, size_t length) {
  Bytes out(length);
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(),
                        static_cast<int>(length), out.data()) != 1) {
    std::abort();  // only fails on allocation failure or misuse
  }
  return out;
}

Bytes AesCtr(ByteView key, ByteView iv, ByteView data) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  Bytes out(data.size());
  int len = 0;
  int tail = 0;
  if (key.size() != 32 || iv.size() != 16 ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ctr(), nullptr, key.data(), iv.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &len, data.data(), static_cast<int>(data.size())) !=
          1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &tail) != 1) {
    std::abort();  // a 32-byte key and 16-byte IV cannot fail
  }
  return out;
}

namespace {

// AES-256-GCM fetched from OpenSSL's provider once: EVP_aes_256_gcm() makes every
// EVP_*Init_ex look the implementation up again, which was a third of the cost of sealing a
// keepalive ping. Never freed (one per process).
const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* const cipher = [] {
    const EVP_CIPHER* fetched = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    return fetched ? fetched : EVP_aes_256_gcm();
  }();
  return cipher;
}

}  // namespace

Bytes AesGcmEncrypt(ByteView key, ByteView iv, ByteView aad, ByteView plaintext) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  Bytes out(plaintext.size() + 16);
  int len = 0;
  int total = 0;
  EVP_EncryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, nullptr, nullptr);
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()), nullptr);
  EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), iv.data());
  if (!aad.empty())
    EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size()));
  EVP_EncryptUpdate(ctx.get(), out.data(), &len, plaintext.data(),
                    static_cast<int>(plaintext.size()));
  total = len;
  EVP_EncryptFinal_ex(ctx.get(), out.data() + total, &len);
  total += len;
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, 16, out.data() + total);
  return out;
}

absl::StatusOr<Bytes> AesGcmDecrypt(ByteView key, ByteView iv, ByteView aad, ByteView sealed) {
  if (sealed.size() < 16) return absl::DataLossError("AES-GCM ciphertext shorter than its tag");
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  const size_t n = sealed.size() - 16;
  Bytes out(n);
  int len = 0;
  EVP_DecryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, nullptr, nullptr);
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()), nullptr);
  EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), iv.data());
  if (!aad.empty())
    EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size()));
  EVP_DecryptUpdate(ctx.get(), out.data(), &len, sealed.data(), static_cast<int>(n));
  int total = len;
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, 16, const_cast<uint8_t*>(sealed.data() + n));
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + total, &len) <= 0) {
    return absl::DataLossError("AES-GCM tag mismatch");
  }
  return out;
}

std::array<uint8_t, 64> CurveSign(const std::array<uint8_t, 32>& priv, ByteView message) {
  EnsureSodium();
  uint8_t a[32];
  std::memcpy(a, priv.data(), 32);
  Clamp(a);
  uint8_t A[32];
  crypto_scalarmult_ed25519_base_noclamp(A, a);
  const uint8_t sign_bit = A[31] & 0x80;

  // r = SHA-512(0xFE ‖ 0xFF×31 ‖ a ‖ M ‖ Z) mod L, with 64 random bytes Z (XEdDSA's nonce).
  uint8_t prefix[32];
  std::memset(prefix, 0xff, sizeof prefix);
  prefix[0] = 0xfe;
  uint8_t z[64];
  randombytes_buf(z, sizeof z);
  uint8_t digest[64];
  crypto_hash_sha512_state st;
  crypto_hash_sha512_init(&st);
  crypto_hash_sha512_update(&st, prefix, 32);
  crypto_hash_sha512_update(&st, a, 32);
  crypto_hash_sha512_update(&st, message.data(), message.size());
  crypto_hash_sha512_update(&st, z, 64);
  crypto_hash_sha512_final(&st, digest);
  uint8_t r[32];
  crypto_core_ed25519_scalar_reduce(r, digest);
  uint8_t R[32];
  crypto_scalarmult_ed25519_base_noclamp(R, r);

  // h = SHA-512(R ‖ A ‖ M) mod L; S = r + h·a mod L.
  crypto_hash_sha512_init(&st);
  crypto_hash_sha512_update(&st, R, 32);
  crypto_hash_sha512_update(&st, A, 32);
  crypto_hash_sha512_update(&st, message.data(), message.size());
  crypto_hash_sha512_final(&st, digest);
  uint8_t h[32];
  crypto_core_ed25519_scalar_reduce(h, digest);
  uint8_t a_wide[64] = {};
  std::memcpy(a_wide, a, 32);
  uint8_t a_red[32];
  crypto_core_ed25519_scalar_reduce(a_red, a_wide);
  uint8_t ha[32];
  crypto_core_ed25519_scalar_mul(ha, h, a_red);
  std::array<uint8_t, 64> sig{};
  std::memcpy(sig.data(), R, 32);
  crypto_core_ed25519_scalar_add(sig.data() + 32, r, ha);
  sig[63] |= sign_bit;
  sodium_memzero(a, sizeof a);
  sodium_memzero(a_red, sizeof a_red);
  sodium_memzero(r, sizeof r);
  return sig;
}

bool CurveVerify(ByteView pub, ByteView message, ByteView signature) {
  EnsureSodium();
  if (pub.size() == 33 && pub[0] == 0x05) pub = pub.subspan(1);
  if (pub.size() != 32 || signature.size() != 64) return false;
  uint8_t ed_pub[32];
  if (!MontgomeryToEdwardsY(pub.data(), ed_pub)) return false;
  ed_pub[31] = static_cast<uint8_t>((ed_pub[31] & 0x7f) | (signature[63] & 0x80));
  uint8_t sig[64];
  std::memcpy(sig, signature.data(), 64);
  sig[63] &= 0x7f;
  return crypto_sign_ed25519_verify_detached(sig, message.data(), message.size(), ed_pub) == 0;
}

void RandomBytes(std::span<uint8_t> out) {
  EnsureSodium();
  randombytes_buf(out.data(), out.size());
}

Bytes SignalPublicKey(ByteView pub) {
  Bytes out;
  out.reserve(pub.size() + 1);
  out.push_back(0x05);
  out.insert(out.end(), pub.begin(), pub.end());
  return out;
}

}  // namespace wasentinel::wa
