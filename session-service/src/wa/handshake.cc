#include "handshake.h"

#include <sodium.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::wa {
namespace {

using Cert = wire::CertChain::NoiseCertificate;

Bytes Serialize(const google::protobuf::MessageLite& m) {
  std::string s = m.SerializeAsString();
  return ToBytes(s);
}

Cert MakeCert(const KeyPair& signer, uint32_t serial, uint32_t issuer, ByteView key,
              uint64_t not_before, uint64_t not_after) {
  Cert::Details d;
  d.set_serial(serial);
  d.set_issuer_serial(issuer);
  d.set_key(ToString(key));
  d.set_not_before(not_before);
  d.set_not_after(not_after);
  Cert cert;
  cert.set_details(d.SerializeAsString());
  auto sig = CurveSign(signer.priv, AsBytes(cert.details()));
  cert.set_signature(ToString(sig));
  return cert;
}

absl::Status CertError(std::string_view what) {
  return absl::UnauthenticatedError(absl::StrCat("server certificate: ", Sv(what)));
}

bool ValidAt(const Cert::Details& d, int64_t now) {
  // A missing not_after reads as 0, which has always passed: expired (whatsmeow's reading).
  return static_cast<int64_t>(d.not_before()) <= now && now <= static_cast<int64_t>(d.not_after());
}

}  // namespace

Bytes MakeCertChain(const KeyPair& root, const KeyPair& intermediate, ByteView server_static_pub,
                    uint64_t not_before, uint64_t not_after) {
  wire::CertChain chain;
  *chain.mutable_intermediate() =
      MakeCert(root, 1, kRootIssuerSerial, intermediate.pub, not_before, not_after);
  *chain.mutable_leaf() = MakeCert(intermediate, 2, 1, server_static_pub, not_before, not_after);
  return Serialize(chain);
}

absl::Status VerifyCertChain(ByteView chain_bytes, ByteView root_pub, ByteView server_static,
                             int64_t now_unix) {
  wire::CertChain chain;
  if (!chain.ParseFromArray(chain_bytes.data(), static_cast<int>(chain_bytes.size()))) {
    return CertError("chain does not parse");
  }
  if (!chain.has_intermediate() || !chain.has_leaf() || !chain.intermediate().has_details() ||
      !chain.leaf().has_details()) {
    return CertError("chain lacks the intermediate or leaf certificate");
  }
  const Cert& inter = chain.intermediate();
  const Cert& leaf = chain.leaf();
  if (inter.signature().size() != 64 || leaf.signature().size() != 64) {
    return CertError("signature is not 64 bytes");
  }
  if (!CurveVerify(root_pub, AsBytes(inter.details()), AsBytes(inter.signature()))) {
    return CertError("intermediate is not signed by the trusted root key");
  }
  Cert::Details inter_d;
  if (!inter_d.ParseFromString(inter.details()))
    return CertError("intermediate details do not parse");
  if (inter_d.issuer_serial() != kRootIssuerSerial)
    return CertError("intermediate issuer is not the root");
  if (inter_d.key().size() != 32) return CertError("intermediate key is not 32 bytes");
  if (!ValidAt(inter_d, now_unix)) return CertError("intermediate is expired or not yet valid");
  if (!CurveVerify(AsBytes(inter_d.key()), AsBytes(leaf.details()), AsBytes(leaf.signature()))) {
    return CertError("leaf is not signed by the intermediate");
  }
  Cert::Details leaf_d;
  if (!leaf_d.ParseFromString(leaf.details())) return CertError("leaf details do not parse");
  if (leaf_d.issuer_serial() != inter_d.serial())
    return CertError("leaf issuer is not the intermediate");
  if (leaf_d.key().size() != 32 || server_static.size() != 32 ||
      sodium_memcmp(leaf_d.key().data(), server_static.data(), 32) != 0) {
    return CertError("leaf key is not the server's static key");
  }
  if (!ValidAt(leaf_d, now_unix)) return CertError("leaf is expired or not yet valid");
  return absl::OkStatus();
}

ClientHandshake::ClientHandshake(const KeyPair& noise_key)
    : noise_key_(noise_key), ephemeral_(KeyPair::Generate()) {}

Bytes ClientHandshake::Hello() {
  state_.MixHash(ephemeral_.pub);
  wire::HandshakeMessage msg;
  msg.mutable_client_hello()->set_ephemeral(ToString(ephemeral_.pub));
  return Serialize(msg);
}

absl::StatusOr<Bytes> ClientHandshake::Finish(ByteView server_hello,
                                              const wire::ClientPayload& payload, ByteView root_pub,
                                              int64_t now_unix) {
  wire::HandshakeMessage msg;
  if (!msg.ParseFromArray(server_hello.data(), static_cast<int>(server_hello.size())) ||
      !msg.has_server_hello()) {
    return absl::InvalidArgumentError("handshake: expected a ServerHello");
  }
  const auto& hello = msg.server_hello();
  if (hello.ephemeral().size() != 32 || hello.static_().size() != 48 || hello.payload().empty()) {
    return absl::InvalidArgumentError("handshake: ServerHello fields have the wrong sizes");
  }
  state_.MixHash(AsBytes(hello.ephemeral()));
  WAS_RETURN_IF_ERROR(state_.MixSharedSecret(ephemeral_.priv, AsBytes(hello.ephemeral())));
  WAS_ASSIGN_OR_RETURN(Bytes server_static, state_.DecryptAndHash(AsBytes(hello.static_())));
  WAS_RETURN_IF_ERROR(state_.MixSharedSecret(ephemeral_.priv, server_static));
  WAS_ASSIGN_OR_RETURN(Bytes cert, state_.DecryptAndHash(AsBytes(hello.payload())));
  WAS_RETURN_IF_ERROR(VerifyCertChain(cert, root_pub, server_static, now_unix));

  Bytes enc_static = state_.EncryptAndHash(noise_key_.pub);
  WAS_RETURN_IF_ERROR(state_.MixSharedSecret(noise_key_.priv, AsBytes(hello.ephemeral())));
  Bytes enc_payload = state_.EncryptAndHash(AsBytes(payload.SerializeAsString()));
  wire::HandshakeMessage finish;
  finish.mutable_client_finish()->set_static_(ToString(enc_static));
  finish.mutable_client_finish()->set_payload(ToString(enc_payload));
  return Serialize(finish);
}

ServerHandshake::ServerHandshake(const KeyPair& static_key, Bytes cert_chain, ByteView header)
    : state_(header),
      static_key_(static_key),
      ephemeral_(KeyPair::Generate()),
      cert_chain_(std::move(cert_chain)) {}

absl::StatusOr<Bytes> ServerHandshake::Respond(ByteView client_hello) {
  wire::HandshakeMessage msg;
  if (!msg.ParseFromArray(client_hello.data(), static_cast<int>(client_hello.size())) ||
      !msg.has_client_hello() || msg.client_hello().ephemeral().size() != 32) {
    return absl::InvalidArgumentError("handshake: expected a ClientHello with a 32-byte ephemeral");
  }
  std::memcpy(client_ephemeral_.data(), msg.client_hello().ephemeral().data(), 32);
  state_.MixHash(client_ephemeral_);
  state_.MixHash(ephemeral_.pub);
  WAS_RETURN_IF_ERROR(state_.MixSharedSecret(ephemeral_.priv, client_ephemeral_));
  Bytes enc_static = state_.EncryptAndHash(static_key_.pub);
  WAS_RETURN_IF_ERROR(state_.MixSharedSecret(static_key_.priv, client_ephemeral_));
  Bytes enc_cert = state_.EncryptAndHash(cert_chain_);
  wire::HandshakeMessage reply;
  auto* hello = reply.mutable_server_hello();
  hello->set_ephemeral(ToString(ephemeral_.pub));
  hello->set_static_(ToString(enc_static));
  hello->set_payload(ToString(enc_cert));
  return Serialize(reply);
}

absl::StatusOr<ServerHandshake::ClientIdentity> ServerHandshake::Complete(ByteView client_finish) {
  wire::HandshakeMessage msg;
  if (!msg.ParseFromArray(client_finish.data(), static_cast<int>(client_finish.size())) ||
      !msg.has_client_finish() || msg.client_finish().static_().size() != 48) {
    return absl::InvalidArgumentError("handshake: expected a ClientFinish");
  }
  WAS_ASSIGN_OR_RETURN(Bytes client_static,
                       state_.DecryptAndHash(AsBytes(msg.client_finish().static_())));
  WAS_RETURN_IF_ERROR(state_.MixSharedSecret(ephemeral_.priv, client_static));
  WAS_ASSIGN_OR_RETURN(Bytes payload,
                       state_.DecryptAndHash(AsBytes(msg.client_finish().payload())));
  ClientIdentity id;
  std::memcpy(id.static_pub.data(), client_static.data(), 32);
  if (!id.payload.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError("handshake: ClientPayload does not parse");
  }
  return id;
}

}  // namespace wasentinel::wa
