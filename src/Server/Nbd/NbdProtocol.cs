namespace Verified.Server.Nbd;

/// <summary>
/// The NBD protocol's numbers (doc/proto.md of the NBD project), as far as Verified speaks it:
/// fixed newstyle negotiation, simple and structured replies, and the <c>base:allocation</c> context.
/// </summary>
internal static class NbdProtocol
{
    // Handshake.
    public const ulong InitMagic = 0x4e42444d41474943;   // "NBDMAGIC"
    public const ulong OptMagic = 0x49484156454F5054;    // "IHAVEOPT"
    public const ulong OptReplyMagic = 0x3e889045565a9;
    public const ushort FlagFixedNewstyle = 1 << 0;
    public const ushort FlagNoZeroes = 1 << 1;
    public const uint ClientFlagFixedNewstyle = 1 << 0;
    public const uint ClientFlagNoZeroes = 1 << 1;

    // Options.
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptStartTls = 5;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint OptListMetaContext = 9;
    public const uint OptSetMetaContext = 10;

    // Option replies.
    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepMetaContext = 4;
    public const uint RepErrUnsup = 0x80000001;
    public const uint RepErrPolicy = 0x80000002;
    public const uint RepErrInvalid = 0x80000003;
    public const uint RepErrTlsReqd = 0x80000005;
    public const uint RepErrUnknown = 0x80000006;
    public const uint RepErrTooBig = 0x80000009;

    // NBD_OPT_INFO / GO information types.
    public const ushort InfoExport = 0;
    public const ushort InfoName = 1;
    public const ushort InfoDescription = 2;
    public const ushort InfoBlockSize = 3;

    // Transmission flags.
    public const ushort TxHasFlags = 1 << 0;
    public const ushort TxReadOnly = 1 << 1;
    public const ushort TxSendFlush = 1 << 2;
    public const ushort TxSendFua = 1 << 3;
    public const ushort TxSendTrim = 1 << 5;
    public const ushort TxSendWriteZeroes = 1 << 6;
    public const ushort TxSendDf = 1 << 7;
    public const ushort TxCanMultiConn = 1 << 8;
    public const ushort TxSendCache = 1 << 10;

    // Transmission.
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const int RequestHeaderBytes = 28;
    public const int SimpleReplyHeaderBytes = 16;
    public const int StructuredHeaderBytes = 20;

    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisc = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdCache = 5;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdBlockStatus = 7;

    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;
    public const ushort CmdFlagDf = 1 << 2;
    public const ushort CmdFlagReqOne = 1 << 3;

    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeBlockStatus = 5;
    public const ushort ReplyTypeError = (1 << 15) + 1;

    // Errors on the wire (not the host's errno numbers, though Linux's agree).
    public const uint EPERM = 1;
    public const uint EIO = 5;
    public const uint ENOMEM = 12;
    public const uint EINVAL = 22;
    public const uint ENOSPC = 28;
    public const uint EOVERFLOW = 75;
    public const uint ENOTSUP = 95;
    public const uint ESHUTDOWN = 108;

    // base:allocation flags.
    public const uint StateHole = 1 << 0;
    public const uint StateZero = 1 << 1;

    /// <summary>The meta contexts Verified serves, and their ids on every connection (QEMU's numbering).</summary>
    public const string BaseAllocation = "base:allocation";
    public const uint BaseAllocationId = 0;
    public const string AllocationDepth = "qemu:allocation-depth";
    public const uint AllocationDepthId = 1;
    public const string DirtyBitmapPrefix = "qemu:dirty-bitmap:";
    public const uint FirstBitmapId = 2; // bitmaps get 2, 3, … in the export's order
    public const uint StateDirty = 1 << 0;

    /// <summary>
    /// QEMU's system_errno_to_nbd_errno: the host errno of a failed request as the wire says it
    /// (EROFS reads as EPERM; anything NBD has no name for reads as EINVAL).
    /// </summary>
    public static uint WireErrno(int errno) => errno switch
    {
        0 => 0,
        1 or 30 => EPERM,       // EPERM, EROFS
        5 => EIO,
        12 => ENOMEM,
        28 or 122 => ENOSPC,    // ENOSPC, EDQUOT
        75 => EOVERFLOW,
        95 => ENOTSUP,
        108 => ESHUTDOWN,
        _ => EINVAL,
    };
}
