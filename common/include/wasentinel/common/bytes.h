// Byte buffers and their text encodings (hex, base64), backed by libsodium's codecs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wasentinel {

/// An owned byte buffer.
using Bytes = std::vector<uint8_t>;
/// A read-only view of bytes.
using ByteView = std::span<const uint8_t>;

/// Views the characters of `s` as bytes (no copy).
inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
/// Copies bytes into a std::string (which may hold any byte).
inline std::string ToString(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline Bytes ToBytes(std::string_view s) { return {s.begin(), s.end()}; }

/// Lower-case hex of `b`.
std::string HexEncode(ByteView b);
/// Parses hex (either case); whitespace is ignored. INVALID_ARGUMENT on any other character or
/// an odd number of digits.
absl::StatusOr<Bytes> HexDecode(std::string_view hex);

/// Standard base64 with padding (RFC 4648 §4), the form Baileys' BufferJSON writes.
std::string Base64Encode(ByteView b);
/// Parses standard base64; padding optional. INVALID_ARGUMENT on malformed input.
absl::StatusOr<Bytes> Base64Decode(std::string_view b64);

/// Debian's Abseil (20220623) is built with its own absl::string_view, which does not convert
/// from std::string_view; this bridges the two for absl::StrCat and friends.
inline absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

/// A UUID in its canonical text form (8-4-4-4-12 hex digits): ids are checked with it before
/// they reach SQL.
bool IsUuid(std::string_view s);
/// OK for a session id that is a UUID; INVALID_ARGUMENT naming it otherwise.
absl::Status CheckSessionId(std::string_view id);

/// Appends `b` to `out`.
inline void Append(Bytes& out, ByteView b) { out.insert(out.end(), b.begin(), b.end()); }

}  // namespace wasentinel
