#include "noise.h"

#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::wa {
namespace {

std::array<uint8_t, 12> Iv(uint32_t counter) {
  std::array<uint8_t, 12> iv{};
  iv[8] = static_cast<uint8_t>(counter >> 24);
  iv[9] = static_cast<uint8_t>(counter >> 16);
  iv[10] = static_cast<uint8_t>(counter >> 8);
  iv[11] = static_cast<uint8_t>(counter);
  return iv;
}

constexpr std::string_view kProtocolName("Noise_XX_25519_AESGCM_SHA256\0\0\0\0", 32);

}  // namespace

NoiseCipher::NoiseCipher(ByteView key) { std::memcpy(key_.data(), key.data(), 32); }

Bytes NoiseCipher::Encrypt(ByteView plaintext) {
  return AesGcmEncrypt(key_, Iv(counter_++), {}, plaintext);
}

absl::StatusOr<Bytes> NoiseCipher::Decrypt(ByteView ciphertext) {
  return AesGcmDecrypt(key_, Iv(counter_++), {}, ciphertext);
}

NoiseHandshake::NoiseHandshake(ByteView header) {
  std::memcpy(h_.data(), kProtocolName.data(), 32);
  ck_ = h_;
  MixHash(header);
}

void NoiseHandshake::MixHash(ByteView data) { h_ = Sha256({h_, data}); }

void NoiseHandshake::MixKey(ByteView ikm) {
  Bytes out = Hkdf(ikm, ck_, {}, 64);
  std::memcpy(ck_.data(), out.data(), 32);
  std::memcpy(k_.data(), out.data() + 32, 32);
  n_ = 0;
}

absl::Status NoiseHandshake::MixSharedSecret(const std::array<uint8_t, 32>& priv, ByteView pub) {
  WAS_ASSIGN_OR_RETURN(auto shared, SharedSecret(priv, pub));
  MixKey(shared);
  return absl::OkStatus();
}

Bytes NoiseHandshake::EncryptAndHash(ByteView plaintext) {
  Bytes ct = AesGcmEncrypt(k_, Iv(n_++), h_, plaintext);
  MixHash(ct);
  return ct;
}

absl::StatusOr<Bytes> NoiseHandshake::DecryptAndHash(ByteView ciphertext) {
  WAS_ASSIGN_OR_RETURN(Bytes pt, AesGcmDecrypt(k_, Iv(n_++), h_, ciphertext));
  MixHash(ciphertext);
  return pt;
}

NoiseHandshake::Ciphers NoiseHandshake::Split(bool initiator) const {
  Bytes out = Hkdf({}, ck_, {}, 64);
  ByteView first(out.data(), 32);
  ByteView second(out.data() + 32, 32);
  return initiator ? Ciphers{NoiseCipher(first), NoiseCipher(second)}
                   : Ciphers{NoiseCipher(second), NoiseCipher(first)};
}

void FrameReader::Feed(ByteView data) {
  if (pos_ > 0 && pos_ == buffer_.size()) {
    buffer_.clear();
    pos_ = 0;
  }
  Append(buffer_, data);
}

absl::StatusOr<std::optional<Bytes>> FrameReader::Next() {
  if (buffered() < 3) return std::nullopt;
  const size_t len =
      size_t{buffer_[pos_]} << 16 | size_t{buffer_[pos_ + 1]} << 8 | buffer_[pos_ + 2];
  if (len > max_frame_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("frame of ", len, " bytes exceeds the limit of ", max_frame_));
  }
  if (buffered() < 3 + len) return std::nullopt;
  Bytes frame(buffer_.begin() + pos_ + 3, buffer_.begin() + pos_ + 3 + len);
  pos_ += 3 + len;
  if (pos_ == buffer_.size()) {
    buffer_.clear();
    pos_ = 0;
  } else if (pos_ > 64 * 1024) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + pos_);
    pos_ = 0;
  }
  return frame;
}

absl::Status AppendFrame(Bytes& out, ByteView payload) {
  if (payload.size() > kMaxFrameSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame of ", payload.size(), " bytes is too large"));
  }
  out.push_back(static_cast<uint8_t>(payload.size() >> 16));
  out.push_back(static_cast<uint8_t>(payload.size() >> 8));
  out.push_back(static_cast<uint8_t>(payload.size()));
  Append(out, payload);
  return absl::OkStatus();
}

}  // namespace wasentinel::wa
