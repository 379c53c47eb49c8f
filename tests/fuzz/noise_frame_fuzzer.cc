// libFuzzer target: the transport reader and the handshake parsers on arbitrary input.
//   byte 0 % 4 == 0: the rest is sealed by a server cipher (so the tag verifies), framed, and
//                     fed to the client channel in chunks chosen by the input: framing,
//                     decryption and node decoding behind a valid tag
//   byte 0 % 4 == 1: the rest is raw socket bytes for the client channel (bad lengths, bad tags)
//   byte 0 % 4 == 2: the rest is a ServerHello for the client handshake (protobuf, sizes, certs)
//   byte 0 % 4 == 3: the rest is a CertChain to verify
#include <cstdint>

#include "handshake.h"
#include "noise_channel.h"

namespace {

using namespace wasentinel;

// Fixed keys, so runs are reproducible.
const wa::KeyPair& Key(uint8_t seed) {
  static wa::KeyPair keys[3] = {wa::KeyPair::FromPrivate(Bytes(32, 1)).value(),
                                wa::KeyPair::FromPrivate(Bytes(32, 2)).value(),
                                wa::KeyPair::FromPrivate(Bytes(32, 3)).value()};
  return keys[seed % 3];
}

void Drain(wa::NoiseChannel& channel) {
  for (int i = 0; i < 1000; ++i) {
    auto node = channel.Next();
    if (!node.ok()) {
      if (node.status().code() == absl::StatusCode::kResourceExhausted) return;
      continue;
    }
    if (!node->has_value()) return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 4;
  ByteView rest(data + 1, size - 1);
  wa::NoiseHandshake hs;
  hs.MixKey(Bytes(32, 9));
  switch (mode) {
    case 0: {
      auto server = hs.Split(/*initiator=*/false);
      wa::NoiseChannel client(hs.Split(/*initiator=*/true));
      // Up to 4 frames, each sealed by the server.
      Bytes stream;
      size_t pos = 0;
      for (int i = 0; i < 4 && pos < rest.size(); ++i) {
        const size_t len = std::min<size_t>(rest[pos], rest.size() - pos - 1);
        ByteView plain = rest.subspan(pos + 1, len);
        (void)wa::AppendFrame(stream, server.write.Encrypt(plain));
        pos += 1 + len;
      }
      for (size_t i = 0; i < stream.size(); i += 7) {
        client.Feed(ByteView(stream).subspan(i, std::min<size_t>(7, stream.size() - i)));
        Drain(client);
      }
      break;
    }
    case 1: {
      wa::NoiseChannel client(hs.Split(/*initiator=*/true));
      client.Feed(rest);
      Drain(client);
      break;
    }
    case 2: {
      wa::ClientHandshake client(Key(0));
      client.Hello();
      (void)client.Finish(rest, wa::wire::ClientPayload(), Key(1).pub, 1'800'000'000);
      wa::ServerHandshake server(Key(2), Bytes{});
      (void)server.Respond(rest);
      (void)server.Complete(rest);
      break;
    }
    case 3:
      (void)wa::VerifyCertChain(rest, Key(1).pub, Key(2).pub, 1'800'000'000);
      break;
  }
  return 0;
}
