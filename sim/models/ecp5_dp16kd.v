// Behavioural model of the subset of the ECP5 DP16KD block RAM that rtl/banked_memory.py uses:
// 2048 x 9 on both ports (DATA_WIDTH_A = DATA_WIDTH_B = 9, address bits ADx13..ADx3), port A writes
// (WRITEMODE NORMAL, no output register), port B reads through its output register
// (REGMODE_B = "OUTREG"), synchronous reset of port B's output latch and register (RESETMODE SYNC),
// chip selects decoded to 0b000, contents initially zero.  Yosys ships only a black box for this
// primitive (cells_sim_ecp5.v), so the test of BankedMemory's instance simulates this model; it
// follows the Lattice ECP5 memory usage guide (TN1264) for the modes used and refuses any other mode.
// A port-B read of the address that port A writes at the same clock edge yields X (the hardware
// does not define it), so a test that relies on such a read fails.
module DP16KD #(
    parameter DATA_WIDTH_A = 18, parameter DATA_WIDTH_B = 18,
    parameter REGMODE_A = "NOREG", parameter REGMODE_B = "NOREG",
    parameter RESETMODE = "SYNC", parameter ASYNC_RESET_RELEASE = "SYNC",
    parameter CSDECODE_A = "0b000", parameter CSDECODE_B = "0b000",
    parameter WRITEMODE_A = "NORMAL", parameter WRITEMODE_B = "NORMAL",
    parameter GSR = "ENABLED"
) (
    input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
    input CEA, OCEA, CLKA, WEA, RSTA,
    input CSA2, CSA1, CSA0,
    output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
    input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
    input CEB, OCEB, CLKB, WEB, RSTB,
    input CSB2, CSB1, CSB0,
    output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
    initial begin
        if (DATA_WIDTH_A != 9 || DATA_WIDTH_B != 9 || REGMODE_A != "NOREG" || REGMODE_B != "OUTREG"
                || RESETMODE != "SYNC" || CSDECODE_A != "0b000" || CSDECODE_B != "0b000"
                || WRITEMODE_A != "NORMAL") begin
            $display("DP16KD model: unsupported mode");
            $finish(1);
        end
    end

    reg [8:0] mem [0:2047];
    // X until the first reset edge (also keeps Icarus' time-0 ordering from hiding the first values
    // from the combinational logic after the block RAM)
    reg [8:0] latch_b, out_b;
    integer i;
    initial for (i = 0; i < 2048; i = i + 1) mem[i] = 0;

    wire [10:0] addr_a = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3};
    wire [10:0] addr_b = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3};
    wire [8:0] din_a = {DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire sel_a = {CSA2, CSA1, CSA0} == 3'b000;
    wire sel_b = {CSB2, CSB1, CSB0} == 3'b000;
    wire write_a = CEA && WEA && sel_a;

    // one clock (the model requires CLKA and CLKB to be the same net, as BankedMemory wires them)
    always @(posedge CLKB) begin
        if (CLKA !== CLKB) begin
            $display("DP16KD model: CLKA and CLKB must be the same clock");
            $finish(1);
        end
        if (WEB && CEB) begin
            $display("DP16KD model: port B writes are not modelled");
            $finish(1);
        end
        if (RSTB) begin
            latch_b <= 0;
            out_b <= 0;
        end else begin
            if (OCEB) out_b <= latch_b;
            if (CEB && sel_b) latch_b <= (write_a && addr_a == addr_b) ? 9'bx : mem[addr_b];
        end
        if (write_a) mem[addr_a] <= din_a;
    end

    assign {DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = out_b;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9} = 0;
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4,
            DOA3, DOA2, DOA1, DOA0} = 0;
endmodule
