// The transport phase of a WhatsApp Web connection for either role: binary nodes are encoded,
// encrypted with the Noise transport cipher and framed; received bytes are deframed, decrypted
// and decoded. No I/O: callers move the bytes.
//
// Source: whatsmeow socket/noisesocket.go (frames; the split into transport keys).
#pragma once

#include <optional>

#include "absl/status/statusor.h"
#include "binary_node.h"
#include "noise.h"

namespace wasentinel::wa {

class NoiseChannel {
 public:
  explicit NoiseChannel(const NoiseHandshake::Ciphers& ciphers) : ciphers_(ciphers) {}

  /// The framed ciphertext of `node`, ready for the socket. Frames must reach the socket in the
  /// order Seal produced them (the nonce counts frames).
  absl::StatusOr<Bytes> Seal(const Node& node);

  /// Appends received socket bytes.
  void Feed(ByteView data) { reader_.Feed(data); }

  /// The next received node, nullopt when no complete frame is buffered. DATA_LOSS for a frame
  /// whose tag fails (the channel stays usable), INVALID_ARGUMENT for a node that does not
  /// decode, RESOURCE_EXHAUSTED for an oversized frame (fatal for the stream).
  absl::StatusOr<std::optional<Node>> Next();

 private:
  NoiseHandshake::Ciphers ciphers_;
  FrameReader reader_;
};

}  // namespace wasentinel::wa
