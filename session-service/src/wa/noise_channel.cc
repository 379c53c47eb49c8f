#include "noise_channel.h"

#include "wasentinel/common/status_macros.h"

namespace wasentinel::wa {

absl::StatusOr<Bytes> NoiseChannel::Seal(const Node& node) {
  WAS_ASSIGN_OR_RETURN(Bytes plain, EncodeNode(node));
  Bytes sealed = ciphers_.write.Encrypt(plain);
  Bytes out;
  out.reserve(sealed.size() + 3);
  WAS_RETURN_IF_ERROR(AppendFrame(out, sealed));
  return out;
}

absl::StatusOr<std::optional<Node>> NoiseChannel::Next() {
  WAS_ASSIGN_OR_RETURN(std::optional<Bytes> frame, reader_.Next());
  if (!frame) return std::nullopt;
  WAS_ASSIGN_OR_RETURN(Bytes plain, ciphers_.read.Decrypt(*frame));
  WAS_ASSIGN_OR_RETURN(Node node, DecodeNode(plain));
  return node;
}

}  // namespace wasentinel::wa
