// Verilator main for intformer's BoardTop (hw/boardtop.py, power_on_reset=True): the
// board's USB-serial chip. It opens a pseudo-terminal, prints its slave path, and
// then clocks the design: bytes the host writes to the terminal are shifted into
// uart_rx at DIVISOR clock cycles per bit (8N1), bits on uart_tx are sampled in the
// middle and the decoded bytes written back to the terminal. The host opens the
// slave path as a serial port (intformer.gen.boardrun), so it runs exactly the code
// it runs against a board. Generated into the build folder by intformer.gen.boardrun;
// kept in the package as a template (this file is compiled as-is).
//
// Usage: Vboard            (stdout: "PTY path", then at the end the figures below)
//
// Simulated time stands still while nothing can happen without the host (the line
// quiet, the accelerator idle), so the host's own speed does not show up as cycles.
// While the bridge waits for the rest of a frame, the simulation gives the host 20 ms
// of wall time per 256 cycles, so a lost byte still ends in the bridge's timeout.
//
// The simulation ends when its standard input closes; it then prints
//   "T cycles wall_seconds link_cycles bytes_to_board bytes_from_board"
// where link_cycles counts the cycles in which a frame was in progress or a byte on
// the line (the link's busy time, host round trips excluded).
#include "Vtop.h"
#include "verilated.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>
#include <vector>

static Vtop* top;
static uint64_t cycles = 0;
static const int divisor = DIVISOR;

static void step() {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    top->eval();
    cycles++;
}

static void write_all(int fd, const uint8_t* b, size_t n) {
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, 100);
            continue;
        }
        b += k;
        n -= (size_t)k;
    }
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) {
        std::perror("posix_openpt");
        return 2;
    }
    const char* name = ptsname(master);
    // Hold the slave open ourselves: the master then never reports a hang-up when the
    // host closes and reopens the port. Raw mode: no echo, no line editing.
    int slave = open(name, O_RDWR | O_NOCTTY);
    struct termios t;
    if (slave < 0 || tcgetattr(slave, &t)) {
        std::perror("pty slave");
        return 2;
    }
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    std::printf("PTY %s\n", name);
    std::fflush(stdout);

    top = new Vtop;
    auto t0 = std::chrono::steady_clock::now();
    top->uart_rx = 1;
    top->clk = 0;
    top->eval();
    for (int i = 0; i < 8; i++) step();

    std::deque<uint8_t> to_board;
    std::vector<uint8_t> to_host;
    uint64_t link_cycles = 0, bytes_in = 0, bytes_out = 0;
    // Host to board: the frame being shifted (start, 8 data, stop), bit index, cycles left.
    int rx_bit = -1, rx_left = 0;
    uint16_t rx_frame = 0;
    // Board to host: -1 idle, else the bit being sampled; cycles to the next sample.
    int tx_bit = -1, tx_left = 0;
    uint8_t tx_byte = 0;
    uint64_t quiet = 0;   // cycles since a bit last moved on either line
    uint8_t buf[65536];
    bool host_open = true;
    while (host_open) {
        // Take what the host wrote (not every cycle: a system call costs more than one).
        if (to_board.empty() && (cycles & 31) == 0) {
            ssize_t k = read(master, buf, sizeof buf);
            for (ssize_t i = 0; i < k; i++) to_board.push_back(buf[i]);
        }
        // Hand the host what the board sent in blocks (a system call per byte costs a
        // sixth of the simulation's time), and all of it once the line goes quiet.
        if (to_host.size() >= 256 || (!to_host.empty() && tx_bit < 0 && quiet > (uint64_t)(12 * divisor))) {
            write_all(master, to_host.data(), to_host.size());
            to_host.clear();
        }
        bool line_busy = rx_bit >= 0 || tx_bit >= 0 || !to_board.empty();
        if (!line_busy && !top->led_busy && quiet > (uint64_t)(20 * divisor)) {
            // Nothing moves without the host: wait for it (or for the end).
            struct pollfd p[2] = {{master, POLLIN, 0}, {0, POLLIN, 0}};
            int timeout = top->led_link ? 20 : 200;
            int n = poll(p, 2, timeout);
            if (n > 0 && (p[1].revents & (POLLIN | POLLHUP))) {
                char c;
                if (read(0, &c, 1) <= 0) host_open = false;
            }
            if (n > 0 && (p[0].revents & POLLIN)) {
                ssize_t k = read(master, buf, sizeof buf);
                for (ssize_t i = 0; i < k; i++) to_board.push_back(buf[i]);
            } else if (top->led_link) {
                // The bridge waits for a byte the host does not send: let its timeout run.
                for (int i = 0; i < 256; i++) {
                    step();
                    link_cycles++;
                }
            }
            quiet = to_board.empty() ? quiet : 0;
            continue;
        }
        if (rx_bit < 0 && !to_board.empty()) {
            rx_frame = (uint16_t)((1u << 9) | (uint16_t(to_board.front()) << 1));
            to_board.pop_front();
            rx_bit = 0;
            rx_left = divisor;
        }
        top->uart_rx = rx_bit < 0 ? 1 : (rx_frame >> rx_bit) & 1;
        bool link = top->led_link || rx_bit >= 0 || tx_bit >= 0;
        step();
        if (link) link_cycles++;
        quiet++;
        if (rx_bit >= 0 && --rx_left == 0) {
            quiet = 0;
            rx_left = divisor;
            if (++rx_bit == 10) {
                rx_bit = -1;
                bytes_in++;
            }
        }
        if (tx_bit < 0) {
            if (!top->uart_tx) {
                tx_bit = 0;
                tx_left = divisor / 2;
                quiet = 0;
            }
        } else if (--tx_left == 0) {
            int bit = top->uart_tx;
            tx_left = divisor;
            quiet = 0;
            if (tx_bit == 0 && bit) {
                tx_bit = -1;   // a glitch, not a start bit
            } else if (tx_bit >= 1 && tx_bit <= 8) {
                tx_byte = (uint8_t)(tx_byte >> 1 | bit << 7);
                tx_bit++;
            } else if (tx_bit == 9) {
                // A low stop bit is a framing error: the host sees the byte missing.
                if (bit) {
                    to_host.push_back(tx_byte);
                    bytes_out++;
                }
                tx_bit = -1;
            } else {
                tx_bit++;
            }
        }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("T %llu %.6f %llu %llu %llu\n", (unsigned long long)cycles, secs,
                (unsigned long long)link_cycles, (unsigned long long)bytes_in,
                (unsigned long long)bytes_out);
    std::fflush(stdout);
    top->final();
    delete top;
    close(slave);
    close(master);
    return 0;
}
