// libFuzzer target: the pairing inputs that come from outside — a QR code text (wa-sim's
// /pair, wactl users) and the server's <pair-success> stanza, both as raw device-identity bytes
// and as a whole decoded node. The first byte picks the input.
#include <cstdint>
#include <string_view>

#include "binary_node.h"
#include "pairing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wasentinel::wa;
  static const DeviceCredentials creds = DeviceCredentials::Generate();
  if (size == 0) return 0;
  const wasentinel::ByteView rest(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      (void)ParseQrCode(std::string_view(reinterpret_cast<const char*>(rest.data()), rest.size()));
      break;
    case 1: {
      Node iq = MakeNode(
          "iq", {{"id", "1"}, {"type", "set"}},
          std::vector<Node>{MakeNode(
              "pair-success", {},
              std::vector<Node>{
                  MakeNode("device-identity", {}, wasentinel::Bytes(rest.begin(), rest.end())),
                  MakeNode("device", {{"jid", "15551234567:3@s.whatsapp.net"}})})});
      (void)AnswerPairSuccess(iq, creds);
      break;
    }
    case 2: {
      auto node = DecodeNodeBody(rest);
      if (node.ok()) (void)AnswerPairSuccess(*node, creds);
      break;
    }
  }
  return 0;
}
