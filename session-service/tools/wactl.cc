// wactl: the command line of session-service's gRPC API. Prints protobuf JSON.
//
//   wactl [--addr=HOST:PORT] health
//   wactl list [--tenant=T] [--state=CONNECTED,...] [--page_size=N] [--page_token=TOKEN]
//   wactl get ID | connect ID | disconnect ID
//   wactl create --tenant=T --creds=creds.json [--name=primary] [--account=NAME]
//                [--email=E] [--auto_connect=false]
//   wactl watch [--after=SEQ] [--session=ID] [--tenant=T]    (one JSON event per line)
//
// Exit codes: 0 OK, 1 the call failed (the gRPC status is printed), 2 bad usage.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <iostream>
#include <iterator>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "wasentinel/common/process.h"
#include "wasentinel/session/v1/session.grpc.pb.h"

ABSL_FLAG(std::string, addr, wasentinel::EnvOr("WAS_ADDR", "127.0.0.1:7001"),
          "session-service address [WAS_ADDR]");
ABSL_FLAG(std::string, tenant, "", "tenant id (create, list, watch)");
ABSL_FLAG(std::string, state, "", "comma-separated states to list, e.g. CONNECTED,DISCONNECTED");
ABSL_FLAG(int, page_size, 0, "list page size (server default 100)");
ABSL_FLAG(std::string, page_token, "", "list page token");
ABSL_FLAG(std::string, creds, "", "create: path of a Baileys creds.json");
ABSL_FLAG(std::string, name, "primary", "create: session name");
ABSL_FLAG(std::string, account, "", "create: account name");
ABSL_FLAG(std::string, email, "", "create: owner e-mail");
ABSL_FLAG(bool, auto_connect, true, "create: connect now and on every start");
ABSL_FLAG(int64_t, after, -1, "watch: replay events after this sequence (-1: only new ones)");
ABSL_FLAG(std::string, session, "", "watch: only this session");
ABSL_FLAG(int, timeout_seconds, 30, "deadline of unary calls");

namespace v1 = wasentinel::session::v1;

namespace {

std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
}

int Print(const grpc::Status& status, const google::protobuf::Message& message) {
  if (!status.ok()) {
    std::cerr << "wactl: " << CodeName(status) << ": " << status.error_message() << "\n";
    return 1;
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  std::cout << json;
  return 0;
}

void Deadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(absl::GetFlag(FLAGS_timeout_seconds)));
}

int Usage() {
  std::cerr << "usage: wactl [--addr=HOST:PORT] health|list|get ID|create|connect ID|disconnect "
               "ID|watch  (--help for flags)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("wactl: command line of WA Sentinel's session-service");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return Usage();
  const std::string cmd = args[1];
  const std::string id = args.size() > 2 ? args[2] : "";
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_addr), grpc::InsecureChannelCredentials());
  auto stub = v1::SessionService::NewStub(channel);
  grpc::ClientContext ctx;

  if (cmd == "health") {
    Deadline(ctx);
    v1::GetHealthResponse resp;
    return Print(stub->GetHealth(&ctx, {}, &resp), resp);
  }
  if (cmd == "list") {
    Deadline(ctx);
    v1::ListSessionsRequest req;
    req.set_tenant_id(absl::GetFlag(FLAGS_tenant));
    req.set_page_size(absl::GetFlag(FLAGS_page_size));
    req.set_page_token(absl::GetFlag(FLAGS_page_token));
    for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_state), ',', absl::SkipEmpty())) {
      v1::SessionState state;
      if (!v1::SessionState_Parse("SESSION_STATE_" + std::string(s), &state)) {
        std::cerr << "wactl: unknown state " << s << "\n";
        return 2;
      }
      req.add_states(state);
    }
    v1::ListSessionsResponse resp;
    return Print(stub->ListSessions(&ctx, req, &resp), resp);
  }
  if (cmd == "get" || cmd == "connect" || cmd == "disconnect") {
    if (id.empty()) return Usage();
    Deadline(ctx);
    if (cmd == "get") {
      v1::GetSessionRequest req;
      req.set_id(id);
      v1::GetSessionResponse resp;
      return Print(stub->GetSession(&ctx, req, &resp), resp);
    }
    if (cmd == "connect") {
      v1::ConnectRequest req;
      req.set_id(id);
      v1::ConnectResponse resp;
      return Print(stub->Connect(&ctx, req, &resp), resp);
    }
    v1::DisconnectRequest req;
    req.set_id(id);
    v1::DisconnectResponse resp;
    return Print(stub->Disconnect(&ctx, req, &resp), resp);
  }
  if (cmd == "create") {
    const std::string path = absl::GetFlag(FLAGS_creds);
    std::ifstream f(path);
    if (path.empty() || !f) {
      std::cerr << "wactl: --creds must name a readable creds.json\n";
      return 2;
    }
    v1::CreateSessionRequest req;
    req.set_creds_json(std::string(std::istreambuf_iterator<char>(f), {}));
    req.set_tenant_id(absl::GetFlag(FLAGS_tenant));
    req.set_session_name(absl::GetFlag(FLAGS_name));
    req.set_account_name(absl::GetFlag(FLAGS_account));
    req.set_owner_email(absl::GetFlag(FLAGS_email));
    req.set_auto_connect(absl::GetFlag(FLAGS_auto_connect));
    Deadline(ctx);
    v1::CreateSessionResponse resp;
    return Print(stub->CreateSession(&ctx, req, &resp), resp);
  }
  if (cmd == "watch") {
    v1::WatchSessionEventsRequest req;
    if (absl::GetFlag(FLAGS_after) >= 0) req.set_after_sequence(absl::GetFlag(FLAGS_after));
    req.set_session_id(absl::GetFlag(FLAGS_session));
    req.set_tenant_id(absl::GetFlag(FLAGS_tenant));
    auto reader = stub->WatchSessionEvents(&ctx, req);
    v1::SessionEvent event;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    while (reader->Read(&event)) {
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(event, &json, options);
      std::cout << json << std::endl;
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      std::cerr << "wactl: " << CodeName(status) << ": " << status.error_message() << "\n";
      return 1;
    }
    return 0;
  }
  return Usage();
}
