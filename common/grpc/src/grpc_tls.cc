#include "wasentinel/common/grpc_tls.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/strings/str_cat.h"
#include "wasentinel/common/bytes.h"
#include "wasentinel/common/files.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, std::string_view what) {
  auto text = ReadWholeFile(path);
  if (!text.ok())
    return absl::InvalidArgumentError(absl::StrCat("cannot read the ", Sv(what), " ", path));
  return text;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const std::string& cert_file, const std::string& key_file, const std::string& client_ca_file) {
  if (cert_file.empty() && key_file.empty()) return grpc::InsecureServerCredentials();
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  WAS_ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile(cert_file, "TLS certificate"));
  WAS_ASSIGN_OR_RETURN(pair.private_key, ReadPemFile(key_file, "TLS key"));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!client_ca_file.empty()) {
    WAS_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(client_ca_file, "client CA"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcChannelCredentials(
    const std::string& roots_file, const std::string& cert_file, const std::string& key_file) {
  if (roots_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  WAS_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(roots_file, "CA"));
  if (!cert_file.empty() && !key_file.empty()) {
    WAS_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile(cert_file, "TLS certificate"));
    WAS_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(key_file, "TLS key"));
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace wasentinel
