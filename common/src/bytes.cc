#include "wasentinel/common/bytes.h"

#include <sodium.h>

#include <cctype>

#include "absl/strings/str_cat.h"

namespace wasentinel {

std::string HexEncode(ByteView b) {
  std::string out(b.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), b.data(), b.size());
  out.pop_back();
  return out;
}

absl::StatusOr<Bytes> HexDecode(std::string_view hex) {
  Bytes out(hex.size() / 2 + 1);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), " \t\r\n:", &len, &end) != 0 ||
      end != hex.data() + hex.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not valid hex at offset ", end ? end - hex.data() : 0));
  }
  out.resize(len);
  return out;
}

std::string Base64Encode(ByteView b) {
  constexpr int kVariant = sodium_base64_VARIANT_ORIGINAL;
  std::string out(sodium_base64_ENCODED_LEN(b.size(), kVariant), '\0');
  sodium_bin2base64(out.data(), out.size(), b.data(), b.size(), kVariant);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

absl::StatusOr<Bytes> Base64Decode(std::string_view b64) {
  // Accept both padded and unpadded input, as BufferJSON readers do.
  const bool padded = !b64.empty() && b64.back() == '=';
  const int variant =
      padded ? sodium_base64_VARIANT_ORIGINAL : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
  Bytes out(b64.size() * 3 / 4 + 3);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), b64.data(), b64.size(), "\r\n", &len, &end,
                        variant) != 0 ||
      end != b64.data() + b64.size()) {
    return absl::InvalidArgumentError("not valid base64");
  }
  out.resize(len);
  return out;
}

bool IsUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

absl::Status CheckSessionId(std::string_view id) {
  if (IsUuid(id)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("session id \"", Sv(id), "\" is not a UUID"));
}

}  // namespace wasentinel
