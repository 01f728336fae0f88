// Verilator main for intformer's SimTop (hw/simtop.py): runs a script of host
// operations against the accelerator and its in-design memory, with no Python in
// the loop. Generated into the build folder by intformer.gen.run; kept in the
// package as a template (this file is compiled as-is).
//
// Usage: Vsim SCRIPT OUTPUT
//
// SCRIPT lines (numbers in hex, memory addresses in bytes):
//   M addr hexbytes   write bytes to memory
//   D addr len        read len bytes of memory      -> "D hexbytes"
//   W offset value    AXI4-Lite register write
//   R offset          AXI4-Lite register read       -> "R value"
//   I limit           clock until irq is high, at most limit cycles
//                                                   -> "I cycles timed_out(0/1)"
// At the end: "T total_cycles wall_seconds cpu_seconds" (wall and process CPU time
// of the whole script, file parsing excluded).
// M and D lines take no clock cycles (see read_beat).
#include "Vtop.h"
#include "Vtop___024root.h"
#include "verilated.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static Vtop* top;
static uint64_t cycles = 0;

// Set and get the backdoor beat (32/64-bit ports are integers, wider ones VlWide).
template <typename T> static void put(T& sig, const uint8_t* b, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= uint64_t(b[i]) << (8 * i);
    sig = (T)v;
}
template <std::size_t W> static void put(VlWide<W>& sig, const uint8_t* b, int n) {
    for (std::size_t w = 0; w < W; w++) {
        uint32_t v = 0;
        for (int k = 0; k < 4; k++)
            if ((int)(4 * w + k) < n) v |= uint32_t(b[4 * w + k]) << (8 * k);
        sig[w] = v;
    }
}
template <typename T> static void get(const T& sig, uint8_t* b, int n) {
    uint64_t v = (uint64_t)sig;
    for (int i = 0; i < n; i++) b[i] = (v >> (8 * i)) & 0xff;
}
template <std::size_t W> static void get(const VlWide<W>& sig, uint8_t* b, int n) {
    for (int i = 0; i < n; i++) b[i] = (sig[i / 4] >> (8 * (i % 4))) & 0xff;
}

static void step() {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    top->eval();
    cycles++;
}

static const int beat_bytes = BEAT_BYTES;

// AXIMemory's storage as Verilator names it (MEM_ARRAY; the build keeps it public),
// rather than its backdoor port: a beat through the port is a clock cycle of the
// whole design, and loading the digits model's memory image that way was more than
// half of a run's cycles. The driver touches memory only while the accelerator is
// idle, so nothing can tell the difference.
template <typename T, std::size_t N> static constexpr std::size_t depth_of(const VlUnpacked<T, N>&) {
    return N;
}

static void read_beat(uint64_t index, uint8_t* b) {
    auto& mem = top->rootp->MEM_ARRAY;
    get(mem[index % depth_of(mem)], b, beat_bytes);
}

static void write_beat(uint64_t index, const uint8_t* b) {
    auto& mem = top->rootp->MEM_ARRAY;
    put(mem[index % depth_of(mem)], b, beat_bytes);
}

static void mem_write(uint64_t addr, const std::vector<uint8_t>& data) {
    uint8_t b[beat_bytes];
    size_t done = 0;
    while (done < data.size()) {
        uint64_t a = addr + done;
        uint64_t index = a / beat_bytes;
        int off = (int)(a % beat_bytes);
        size_t n = std::min<size_t>(beat_bytes - off, data.size() - done);
        if (off != 0 || n != (size_t)beat_bytes) read_beat(index, b);
        for (size_t i = 0; i < n; i++) b[off + i] = data[done + i];
        write_beat(index, b);
        done += n;
    }
}

static std::vector<uint8_t> mem_read(uint64_t addr, size_t len) {
    std::vector<uint8_t> out;
    out.reserve(len);
    uint8_t b[beat_bytes];
    while (out.size() < len) {
        uint64_t a = addr + out.size();
        int off = (int)(a % beat_bytes);
        read_beat(a / beat_bytes, b);
        for (int i = off; i < beat_bytes && out.size() < len; i++) out.push_back(b[i]);
    }
    return out;
}

static void reg_write(uint32_t offset, uint32_t value) {
    top->s_axil_awaddr = offset;
    top->s_axil_awprot = 0;
    top->s_axil_awvalid = 1;
    top->s_axil_wdata = value;
    top->s_axil_wstrb = 0xf;
    top->s_axil_wvalid = 1;
    top->s_axil_bready = 1;
    bool aw = false, w = false, b = false;
    while (!b) {
        top->eval();
        bool aw_hs = top->s_axil_awvalid && top->s_axil_awready;
        bool w_hs = top->s_axil_wvalid && top->s_axil_wready;
        bool b_hs = aw && w && top->s_axil_bvalid;
        step();
        if (aw_hs) { aw = true; top->s_axil_awvalid = 0; }
        if (w_hs) { w = true; top->s_axil_wvalid = 0; }
        if (b_hs) b = true;
    }
    top->s_axil_bready = 0;
}

static uint32_t reg_read(uint32_t offset) {
    top->s_axil_araddr = offset;
    top->s_axil_arprot = 0;
    top->s_axil_arvalid = 1;
    top->s_axil_rready = 1;
    bool ar = false;
    uint32_t data = 0;
    for (;;) {
        top->eval();
        bool ar_hs = top->s_axil_arvalid && top->s_axil_arready;
        bool r_hs = ar && top->s_axil_rvalid;
        if (r_hs) data = top->s_axil_rdata;
        step();
        if (ar_hs) { ar = true; top->s_axil_arvalid = 0; }
        if (r_hs) break;
    }
    top->s_axil_rready = 0;
    return data;
}

static std::vector<uint8_t> unhex(const std::string& s) {
    std::vector<uint8_t> out(s.size() / 2);
    for (size_t i = 0; i < out.size(); i++) out[i] = (uint8_t)std::stoul(s.substr(2 * i, 2), nullptr, 16);
    return out;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s SCRIPT OUTPUT\n", argv[0]);
        return 2;
    }
    Verilated::commandArgs(argc, argv);
    std::ifstream in(argv[1]);
    if (!in) {
        std::fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) lines.push_back(line);
    FILE* out = std::fopen(argv[2], "w");
    if (!out) {
        std::fprintf(stderr, "cannot write %s\n", argv[2]);
        return 2;
    }
    top = new Vtop;
    auto t0 = std::chrono::steady_clock::now();
    std::clock_t c0 = std::clock();
    // SimTop(power_on_reset=True) resets itself in its first cycles.
    top->clk = 0;
    top->eval();
    for (int i = 0; i < 8; i++) step();
    for (const std::string& line : lines) {
        std::istringstream ss(line);
        std::string op, a, b;
        ss >> op >> a >> b;
        if (op == "M") {
            mem_write(std::stoull(a, nullptr, 16), unhex(b));
        } else if (op == "D") {
            std::vector<uint8_t> data = mem_read(std::stoull(a, nullptr, 16), std::stoull(b, nullptr, 16));
            std::fputs("D ", out);
            for (uint8_t x : data) std::fprintf(out, "%02x", x);
            std::fputc('\n', out);
        } else if (op == "W") {
            reg_write((uint32_t)std::stoul(a, nullptr, 16), (uint32_t)std::stoul(b, nullptr, 16));
        } else if (op == "R") {
            std::fprintf(out, "R %x\n", reg_read((uint32_t)std::stoul(a, nullptr, 16)));
        } else if (op == "I") {
            uint64_t limit = std::stoull(a, nullptr, 16), n = 0;
            top->eval();
            while (!top->irq && n < limit) {
                step();
                n++;
            }
            std::fprintf(out, "I %llx %d\n", (unsigned long long)n, top->irq ? 0 : 1);
        } else {
            std::fprintf(stderr, "bad script line: %s\n", line.c_str());
            return 2;
        }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
    std::fprintf(out, "T %llx %.6f %.6f\n", (unsigned long long)cycles, secs, cpu);
    std::fclose(out);
    top->final();
    delete top;
    return 0;
}
