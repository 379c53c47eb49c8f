#include "grpc_bridge.h"

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::console {
namespace {

bool IsIdentifier(std::string_view s, bool dots_allowed) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        !(dots_allowed && c == '.')) {
      return false;
    }
  }
  return true;
}

void AppendMetadata(const std::multimap<grpc::string_ref, grpc::string_ref>& from, Metadata& to) {
  for (const auto& [key, value] : from) {
    const std::string_view k(key.data(), key.size());
    const std::string_view v(value.data(), value.size());
    to.emplace_back(std::string(k),
                    k.ends_with("-bin") ? Base64Encode(AsBytes(v)) : std::string(v));
  }
}

// One forwarded call: a generic bidi-streaming call that writes the request and half-closes,
// then relays every response to the sink, one at a time. It keeps itself alive (self_) until
// gRPC calls OnDone; handles and `next` callbacks hold it too.
class ForwardedCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                            public CallHandle,
                            public std::enable_shared_from_this<ForwardedCall> {
 public:
  explicit ForwardedCall(std::shared_ptr<CallSink> sink) : sink_(std::move(sink)) {}

  void Begin(grpc::GenericStub& stub, ForwardedRequest request) {
    self_ = shared_from_this();
    for (auto& [key, value] : request.metadata) context_.AddMetadata(key, value);
    if (request.timeout) {
      context_.set_deadline(std::chrono::system_clock::now() +
                            absl::ToChronoMilliseconds(*request.timeout));
    }
    grpc::Slice slice(request.message);
    request_ = grpc::ByteBuffer(&slice, 1);
    stub.PrepareBidiStreamingCall(&context_, request.method, grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
  }

  void Cancel() override { context_.TryCancel(); }

  void OnReadInitialMetadataDone(bool ok) override {
    if (ok) DeliverHeaders();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;   // the end of the answers; OnDone follows
    DeliverHeaders();  // a message means the initial metadata came first
    std::string message;
    if (std::vector<grpc::Slice> slices; response_.Dump(&slices).ok()) {
      message.reserve(response_.Length());
      for (const auto& s : slices) {
        message.append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    response_.Clear();
    sink_->OnMessage(std::move(message), [self = shared_from_this()]() mutable {
      absl::MutexLock lock(&self->mu_);
      if (!self->done_) self->StartRead(&self->response_);
    });
  }

  void OnDone(const grpc::Status& status) override {
    Metadata metadata;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      if (!headers_delivered_) AppendMetadata(context_.GetServerInitialMetadata(), metadata);
    }
    AppendMetadata(context_.GetServerTrailingMetadata(), metadata);
    sink_->OnDone(status, std::move(metadata));
    sink_.reset();
    self_.reset();  // may be the last reference
  }

 private:
  // OnHeaders once, under the lock, so that it reaches the sink before any message whichever
  // of gRPC's callbacks gets here first.
  void DeliverHeaders() {
    absl::MutexLock lock(&mu_);
    if (headers_delivered_) return;
    headers_delivered_ = true;
    Metadata initial;
    AppendMetadata(context_.GetServerInitialMetadata(), initial);
    sink_->OnHeaders(std::move(initial));
  }

  std::shared_ptr<CallSink> sink_;
  std::shared_ptr<ForwardedCall> self_;
  grpc::ClientContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool headers_delivered_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

GrpcBridge::GrpcBridge(std::vector<Upstream> upstreams) : upstreams_(std::move(upstreams)) {
  for (const auto& u : upstreams_) stubs_.push_back(std::make_unique<grpc::GenericStub>(u.channel));
}

const Upstream* GrpcBridge::Route(std::string_view method) const {
  if (!method.starts_with('/')) return nullptr;
  method.remove_prefix(1);
  const size_t slash = method.find('/');
  if (slash == std::string_view::npos) return nullptr;
  const std::string_view service = method.substr(0, slash);
  if (!IsIdentifier(service, true) || !IsIdentifier(method.substr(slash + 1), false)) {
    return nullptr;
  }
  const size_t dot = service.rfind('.');
  if (dot == std::string_view::npos) return nullptr;
  const std::string_view package = service.substr(0, dot);
  for (const auto& u : upstreams_) {
    if (u.package == package) return &u;
  }
  return nullptr;
}

std::shared_ptr<CallHandle> GrpcBridge::Start(const Upstream& upstream, ForwardedRequest request,
                                              std::shared_ptr<CallSink> sink) {
  const auto index = static_cast<size_t>(&upstream - upstreams_.data());
  auto call = std::make_shared<ForwardedCall>(std::move(sink));
  call->Begin(*stubs_.at(index), std::move(request));
  return call;
}

std::optional<absl::Duration> ParseGrpcTimeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  int64_t n = 0;
  for (const char c : value.substr(0, value.size() - 1)) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    n = n * 10 + (c - '0');
  }
  switch (value.back()) {
    case 'H':
      return absl::Hours(n);
    case 'M':
      return absl::Minutes(n);
    case 'S':
      return absl::Seconds(n);
    case 'm':
      return absl::Milliseconds(n);
    case 'u':
      return absl::Microseconds(n);
    case 'n':
      return absl::Nanoseconds(n);
    default:
      return std::nullopt;
  }
}

}  // namespace wasentinel::console
