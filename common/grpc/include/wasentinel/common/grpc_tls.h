// gRPC TLS credentials from PEM files, shared by the services' composition roots: the server
// side (optionally requiring client certificates: mTLS) and the client side (a root CA, and
// optionally our own certificate as the client identity).
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace wasentinel {

/// The whole file; INVALID_ARGUMENT naming `what` and the path when it cannot be read.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, std::string_view what);

/// Plaintext when `cert_file` and `key_file` are both empty; TLS with that pair otherwise
/// (INVALID_ARGUMENT when only one is given or a file is unreadable). With `client_ca_file`,
/// clients must present a certificate it signed.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const std::string& cert_file, const std::string& key_file, const std::string& client_ca_file);

/// Plaintext when `roots_file` is empty; TLS trusting `roots_file` otherwise, presenting
/// `cert_file` + `key_file` as the client certificate when both are given.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcChannelCredentials(
    const std::string& roots_file, const std::string& cert_file, const std::string& key_file);

}  // namespace wasentinel
