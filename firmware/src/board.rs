//! Board services over QEMU: the interrupt part of the vector table, semihosting output
//! and exit, the SysTick instruction clock, and stack painting. Both boards (mps2-an386,
//! lm3s6965evb) share this code; `memory.x` and the number of interrupt lines differ.

use core::arch::asm;
use core::sync::atomic::{compiler_fence, Ordering};

use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_semihosting::{hio, nr};

/// External interrupt lines of the board's NVIC, as QEMU models it: 32 on mps2-an386
/// (`hw/arm/mps2.c`, as the AN386 application note), 64 on lm3s6965evb
/// (`hw/arm/stellaris.c`).
#[cfg(board = "mps2-an386")]
const IRQS: usize = 32;
#[cfg(board = "lm3s6965evb")]
const IRQS: usize = 64;

extern "C" {
    /// cortex-m-rt's default handler (an infinite loop).
    fn DefaultHandler();
}

/// The device-specific part of the vector table (cortex-m-rt's `device` feature; without
/// it cortex-m-rt fills the architecture's maximum, 240 lines, 960 B of flash). The
/// firmware enables no interrupt, so every line goes to the default handler.
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
static __INTERRUPTS: [unsafe extern "C" fn(); IRQS] = [DefaultHandler; IRQS];

/// Semihosting `SYS_EXIT_EXTENDED`: `r1` points at `[reason, exit code]`.
const SYS_EXIT_EXTENDED: usize = 0x20;
/// `ADP_Stopped_ApplicationExit`: the reason that makes QEMU exit with the given code.
const ADP_STOPPED_APPLICATION_EXIT: usize = 0x20026;

/// Ends the QEMU run with `code` as its exit status.
pub fn exit(code: u32) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code as usize];
    // SAFETY: a semihosting call with a valid pointer to its two-word parameter block.
    unsafe {
        cortex_m_semihosting::syscall(SYS_EXIT_EXTENDED, &block);
    }
    // A debugger may resume the program after the exit call: stop here.
    loop {
        cortex_m::asm::bkpt();
    }
}

/// The host's stdout (`:tt`), or exit 2 when semihosting is unavailable.
pub fn stdout() -> hio::HostStream {
    let _ = nr::open::W_TRUNC;
    match hio::hstdout() {
        Ok(s) => s,
        Err(()) => exit(2),
    }
}

/// SysTick reload value: the counter runs `RELOAD..=0`, a period of 2^24 ticks.
const RELOAD: u32 = 0x00FF_FFFF;

/// A tick counter on SysTick clocked from the core clock, free-running with no
/// interrupt. [`Ticks::lap`] adds the ticks since the previous lap (modulo the 2^24
/// period) to a 64-bit total, so laps must come at least once per 2^24 ticks (about
/// 670 M instructions on mps2-an386); each lap is exact, and the laps telescope.
pub struct Ticks {
    last: u32,
    total: u64,
}

impl Ticks {
    /// Starts SysTick (core clock, no interrupt) and the count at zero.
    pub fn start(syst: &mut SYST) -> Self {
        syst.disable_interrupt();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_counter();
        Self {
            last: SYST::get_current(),
            total: 0,
        }
    }

    /// Ticks since [`Ticks::start`], counting this lap.
    #[inline(always)]
    pub fn lap(&mut self) -> u64 {
        compiler_fence(Ordering::SeqCst);
        let now = SYST::get_current();
        compiler_fence(Ordering::SeqCst);
        // The counter counts down: elapsed = last - now (mod 2^24).
        self.total += u64::from(self.last.wrapping_sub(now) & RELOAD);
        self.last = now;
        self.total
    }
}

/// Iterations of the calibration loop: 2 instructions each (`subs`, `bne`).
pub const CALIBRATION_ITERS: u32 = 1 << 20;

/// Measures SysTick ticks over a loop of exactly `2 * CALIBRATION_ITERS` instructions.
///
/// Under `-icount shift=0` QEMU advances virtual time by 1 ns per instruction and SysTick
/// counts the core clock, so ticks per instruction is the clock's period in ns (40 on
/// mps2-an386 at 25 MHz); the loop measures it rather than assuming it, since the
/// clock differs per board (lm3s6965evb's depends on its clock configuration).
pub fn calibrate(ticks: &mut Ticks) -> u64 {
    let t0 = ticks.lap();
    // SAFETY: a register-only countdown loop; it touches no memory and no stack.
    unsafe {
        asm!(
            "2:",
            "subs {n}, {n}, #1",
            "bne 2b",
            n = inout(reg) CALIBRATION_ITERS => _,
            options(nomem, nostack),
        );
    }
    ticks.lap() - t0
}

/// Instructions per SysTick tick from a calibration of `cal_ticks` ticks for
/// `2 * CALIBRATION_ITERS` instructions, rounded: 40 on mps2-an386 (25 MHz), 80 on
/// lm3s6965evb (12.5 MHz). The clocks are whole nanoseconds, so the ratio is exact.
pub fn instructions_per_tick(cal_ticks: u64) -> u32 {
    let cal = u32::try_from(cal_ticks).unwrap_or(u32::MAX).max(1);
    (2 * CALIBRATION_ITERS + cal / 2) / cal
}

/// Converts `ticks` to instructions using a calibration of `cal_ticks` ticks (see
/// [`instructions_per_tick`]); for `--features profile`.
#[cfg(feature = "profile")]
pub fn ticks_to_instructions(ticks: u64, cal_ticks: u64) -> u64 {
    ticks * u64::from(instructions_per_tick(cal_ticks))
}

/// The paint left below the stack pointer at boot; words still holding it were never used.
const PAINT: u32 = 0xA5A5_A5A5;
extern "C" {
    /// Lowest stack address: the end of `.bss`/`.uninit` (cortex-m-rt's link.x).
    static mut _stack_end: u32;
    /// Initial stack pointer: the top of RAM (cortex-m-rt's link.x).
    static mut _stack_start: u32;
}

/// Fills the free stack, from `_stack_end` up to the current stack pointer, with
/// [`PAINT`]. Call once, early in `main`. The loop is assembly so that it uses no stack
/// of its own: every word below the stack pointer is painted.
#[inline(always)]
pub fn paint_stack() {
    let bottom = core::ptr::addr_of_mut!(_stack_end) as usize;
    // SAFETY: writes only the words between the end of the statics and the stack pointer,
    // which no live frame, static or interrupt (none is enabled yet) uses.
    unsafe {
        asm!(
            "mov {sp}, sp",
            "2:",
            "cmp {p}, {sp}",
            "bhs 3f",
            "str {v}, [{p}], #4",
            "b 2b",
            "3:",
            p = inout(reg) bottom => _,
            sp = out(reg) _,
            v = in(reg) PAINT,
            options(nostack),
        );
    }
}

/// The deepest stack use since [`paint_stack`], in bytes from the top of RAM: the
/// lowest word that no longer holds the paint.
pub fn stack_high_water() -> usize {
    let top = core::ptr::addr_of_mut!(_stack_start) as usize;
    let mut p = core::ptr::addr_of_mut!(_stack_end) as usize;
    // SAFETY: reads words of the stack region below the live frames (see `paint_stack`).
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}

/// Bytes of RAM the statics take (`.data`, `.bss`, `.uninit`): from RAM's start to
/// the bottom of the stack.
pub fn static_ram() -> usize {
    extern "C" {
        static mut __sdata: u32;
    }
    core::ptr::addr_of_mut!(_stack_end) as usize - core::ptr::addr_of_mut!(__sdata) as usize
}
