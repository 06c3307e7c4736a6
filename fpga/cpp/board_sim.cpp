// The simulated board: the Verilator model of sqdm_board_core (the accelerator behind its UART
// host link) with a UART model on its rx / tx pins, served on a TCP socket, so the host program
// (python -m fpga.host --port socket://127.0.0.1:PORT) drives it exactly as it drives the board
// through /dev/ttyUSB0.
//
//   board_sim DIVISOR PORT      (PORT 0: any free port)
//
// Prints "listening on <port>" and serves one connection: every byte received from the socket is
// sent on rx as an 8N1 frame of DIVISOR clock cycles per bit, every frame the core sends on tx is
// decoded (sampled in the middle of each bit, stop bit checked) and written to the socket. The
// model runs while there is serial traffic or the accelerator is busy; when the line has been
// quiet for a while it waits for the socket instead of spinning. Ends when the peer closes the
// connection, printing "cycles <n> rx_bytes <n> tx_bytes <n> framing_errors <n>" to stderr.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "Vsqdm_board_core.h"
#include "verilated.h"

namespace {

// The line is quiet (no frame either way, accelerator idle) for this many bit times: wait for
// the socket.
constexpr int QUIET_BITS = 40;
constexpr int POLL_EVERY = 64;  // cycles between socket reads while the model is active

int fail(const char* what) {
    std::fprintf(stderr, "board_sim: %s: %s\n", what, std::strerror(errno));
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s DIVISOR PORT\n", argv[0]);
        return 2;
    }
    const int divisor = std::atoi(argv[1]);
    const int port = std::atoi(argv[2]);
    if (divisor < 4) {
        std::fprintf(stderr, "board_sim: DIVISOR must be at least 4, got %s\n", argv[1]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int lsock = socket(AF_INET, SOCK_STREAM, 0);
    if (lsock < 0) return fail("socket");
    int one = 1;
    setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(lsock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return fail("bind");
    if (listen(lsock, 1) < 0) return fail("listen");
    socklen_t len = sizeof addr;
    getsockname(lsock, reinterpret_cast<sockaddr*>(&addr), &len);
    std::printf("listening on %d\n", ntohs(addr.sin_port));
    std::fflush(stdout);
    int conn = accept(lsock, nullptr, nullptr);
    if (conn < 0) return fail("accept");
    close(lsock);
    setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    auto context = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vsqdm_board_core>(context.get());
    top->rx = 1;
    top->rst = 1;
    for (int i = 0; i < 4; ++i) {
        top->clk = 0; top->eval();
        top->clk = 1; top->eval();
    }
    top->rst = 0;

    std::deque<uint8_t> to_rx;   // bytes from the host, not yet on the line
    std::vector<uint8_t> from_tx;  // bytes the core sent, not yet on the socket
    uint16_t rx_frame = 0;
    int rx_bits = 0, rx_timer = 0;
    int tx_state = 0, tx_timer = 0, tx_bit = 0;  // 0 idle, 1 start bit, 2 data, 3 stop bit
    uint8_t tx_byte = 0;
    uint64_t cycles = 0, rx_count = 0, tx_count = 0, framing = 0, quiet = 0;
    bool open = true;
    const uint64_t quiet_limit = static_cast<uint64_t>(QUIET_BITS) * divisor;

    while (open || !from_tx.empty()) {
        const bool active = rx_bits || tx_state || top->busy || !to_rx.empty();
        quiet = active ? 0 : quiet + 1;
        if (quiet > quiet_limit || cycles % POLL_EVERY == 0) {
            if (!from_tx.empty()) {
                ssize_t n = send(conn, from_tx.data(), from_tx.size(), MSG_DONTWAIT);
                if (n > 0) from_tx.erase(from_tx.begin(), from_tx.begin() + n);
                else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
            }
            if (open) {
                pollfd p{conn, POLLIN, 0};
                int wait_ms = (quiet > quiet_limit && from_tx.empty()) ? 50 : 0;
                if (poll(&p, 1, wait_ms) > 0) {
                    uint8_t buf[4096];
                    ssize_t n = recv(conn, buf, sizeof buf, MSG_DONTWAIT);
                    if (n > 0) {
                        to_rx.insert(to_rx.end(), buf, buf + n);
                        quiet = 0;
                    } else if (n == 0) {
                        open = false;
                    }
                }
            }
            if (!open && !active && from_tx.empty()) break;
            if (quiet > quiet_limit) continue;  // nothing to simulate yet
        }
        if (!rx_bits && !to_rx.empty()) {
            rx_frame = static_cast<uint16_t>((1u << 9) | (to_rx.front() << 1));
            to_rx.pop_front();
            rx_bits = 10;
            rx_timer = divisor;
            ++rx_count;
        }
        top->rx = rx_bits ? (rx_frame & 1) : 1;
        top->clk = 0; top->eval();
        top->clk = 1; top->eval();
        ++cycles;
        if (rx_bits && --rx_timer == 0) {
            rx_frame >>= 1;
            --rx_bits;
            rx_timer = divisor;
        }
        const int line = top->tx;
        switch (tx_state) {
        case 0:
            if (!line) { tx_state = 1; tx_timer = divisor / 2; }
            break;
        case 1:
            if (--tx_timer == 0) {
                if (line) tx_state = 0;  // a glitch
                else { tx_state = 2; tx_timer = divisor; tx_bit = 0; tx_byte = 0; }
            }
            break;
        case 2:
            if (--tx_timer == 0) {
                tx_byte = static_cast<uint8_t>(tx_byte | (line << tx_bit));
                tx_timer = divisor;
                if (++tx_bit == 8) tx_state = 3;
            }
            break;
        default:
            if (--tx_timer == 0) {
                if (line) { from_tx.push_back(tx_byte); ++tx_count; }
                else ++framing;
                tx_state = 0;
            }
            break;
        }
    }
    top->final();
    close(conn);
    std::fprintf(stderr, "cycles %llu rx_bytes %llu tx_bytes %llu framing_errors %llu\n",
                 static_cast<unsigned long long>(cycles), static_cast<unsigned long long>(rx_count),
                 static_cast<unsigned long long>(tx_count),
                 static_cast<unsigned long long>(framing));
    return framing ? 1 : 0;
}
