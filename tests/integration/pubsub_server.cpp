#include "pubsub_server.hpp"

#include <algorithm>
#include <any>
#include <utility>

namespace evloop::test {
namespace {

Options options_of(const PubSubConfig& config) {
  Options o;
  o.listen = {"tcp4://127.0.0.1:0"};
  o.loops = config.loops;
  o.idle_timeout = config.idle_timeout;
  o.socket_send_buffer = config.socket_send_buffer;
  // The slow-consumer policy below cuts a subscriber off first; output_limit is the backstop.
  o.output_limit = std::max(o.output_limit, 2 * config.slow_bound);
  o.output_high_water = std::min(o.output_high_water, o.output_limit);
  o.output_low_water = std::min(o.output_low_water, o.output_high_water);
  return o;
}

void raise_to(std::atomic<std::size_t>& max, std::size_t value) {
  std::size_t seen = max.load(std::memory_order_relaxed);
  while (value > seen && !max.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

PubSubServer::PubSubServer(PubSubConfig config)
    : config_(config), loops_(config.loops), server_(options_of(config), callbacks()) {}

PubSubServer::~PubSubServer() {
  server_.stop();
  server_.wait();
}

Status PubSubServer::start() { return server_.start(); }

Callbacks PubSubServer::callbacks() {
  Callbacks cb;
  cb.loop_started = [this](Loop& loop) {
    if (config_.heartbeat.count() == 0) return;
    loop.run_every(config_.heartbeat, [this, &loop] {
      LoopState& state = loops_[loop.index()];
      if (state.saying_goodbye) return;
      for (Conn* c : state.all) send(*c, heartbeat_);
    });
  };
  cb.opened = [this](Conn& c) {
    {
      std::lock_guard lock(ids_mutex_);
      open_ids_.insert(c.id());
    }
    opened.fetch_add(1);
    c.context() = Session{};
    LoopState& state = loops_[c.loop().index()];
    if (state.saying_goodbye) {  // arrived after this loop said goodbye: the stop is under way
      c.write(goodbye_);
      c.close();
      return;
    }
    state.all.insert(&c);
  };
  cb.data = [this](Conn& c, std::string_view bytes) { return on_data(c, bytes); };
  cb.closed = [this](Conn& c, std::error_code error) { on_closed(c, error); };
  return cb;
}

std::size_t PubSubServer::on_data(Conn& c, std::string_view bytes) {
  std::size_t consumed = 0;
  for (;;) {
    const std::size_t end = bytes.find('\n', consumed);
    if (end == std::string_view::npos) return consumed;  // a partial line comes back with more
    on_line(c, bytes.substr(consumed, end - consumed));
    consumed = end + 1;
  }
}

void PubSubServer::on_line(Conn& c, std::string_view line) {
  LoopState& state = loops_[c.loop().index()];
  if (line.starts_with("SUB ")) {
    std::string room(line.substr(4));
    state.rooms[room].insert(&c);
    std::any_cast<Session&>(c.context()).rooms.push_back(room);
    c.write("OK " + room + "\n");
  } else if (line.starts_with("PUB ")) {
    const std::string_view rest = line.substr(4);
    const std::size_t space = rest.find(' ');
    if (space == std::string_view::npos) return c.write("ERR\n");
    publish(c, rest.substr(0, space), rest.substr(space + 1));
  } else if (line != "PING") {
    c.write("ERR\n");
  }
}

void PubSubServer::publish(Conn& c, std::string_view room, std::string_view text) {
  std::string bytes;
  bytes.reserve(room.size() + text.size() + 6);
  bytes.append("MSG ").append(room).append(" ").append(text).append("\n");
  const SharedBuffer message(std::move(bytes));
  const std::string name(room);
  const std::size_t here = c.loop().index();
  deliver(loops_[here], name, message);
  for (std::size_t i = 0; i < loops_.size(); ++i) {
    if (i == here) continue;
    // Posts from one thread run in the order posted: a publisher's messages stay in order on
    // every loop.
    if (server_.loop(i).post([this, i, name, message] { deliver(loops_[i], name, message); })) {
      remote_posts.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void PubSubServer::deliver(LoopState& state, const std::string& room, const SharedBuffer& message) {
  if (state.saying_goodbye) return;  // BYE is the last line
  const auto it = state.rooms.find(room);
  if (it == state.rooms.end()) return;
  for (Conn* c : it->second) send(*c, message);
}

void PubSubServer::send(Conn& c, const SharedBuffer& message) {
  if (c.closing()) return;  // cut off earlier in this batch (or closing anyway)
  const std::size_t pending = c.output_pending();
  raise_to(max_pending, pending);
  if (pending + message.size() > config_.slow_bound) {
    // Its backlog goes with it; the peer sees a reset. `closed` fires after this task returns
    // (Conn), so the room being walked is not changed under us.
    c.abort();
    cut_off.fetch_add(1);
    return;
  }
  c.write(message);
}

void PubSubServer::stop_with_goodbye() {
  // Tasks posted before stop() run before the loops close their connections (Loop::post): the
  // goodbyes are then pending output, which the stop sends before the FIN.
  for (std::size_t i = 0; i < server_.loop_count(); ++i) {
    Loop& loop = server_.loop(i);
    loop.post([this, &loop] { say_goodbye(loop); });
  }
  server_.stop();
}

void PubSubServer::say_goodbye(Loop& loop) {
  LoopState& state = loops_[loop.index()];
  state.saying_goodbye = true;
  for (Conn* c : state.all) {
    c->write(goodbye_);
    goodbyes.fetch_add(1);
  }
}

void PubSubServer::on_closed(Conn& c, std::error_code error) {
  {
    std::lock_guard lock(ids_mutex_);
    if (open_ids_.erase(c.id()) == 0) closed_twice.fetch_add(1);
  }
  LoopState& state = loops_[c.loop().index()];
  state.all.erase(&c);
  if (const auto* session = std::any_cast<Session>(&c.context())) {
    for (const std::string& room : session->rooms) state.rooms[room].erase(&c);
  }
  if (error == errc::idle_timeout) {
    idle_closed.fetch_add(1);
  } else if (error && error != errc::server_stopped) {
    errors.fetch_add(1);
  }
  closed.fetch_add(1);
}

}  // namespace evloop::test
