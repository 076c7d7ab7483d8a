namespace CsiNvme.Protocol.Tcp;

/// <summary>NVMe/TCP PDU types (NVMe TCP Transport 1.0, 3.6.1, Figure 21).</summary>
public enum PduType : byte
{
    ICReq = 0x00,
    ICResp = 0x01,
    H2CTermReq = 0x02,
    C2HTermReq = 0x03,
    CapsuleCmd = 0x04,
    CapsuleResp = 0x05,
    H2CData = 0x06,
    C2HData = 0x07,
    R2T = 0x09,
}

/// <summary>Common header FLAGS bits (TCP 1.0, 3.6.1).</summary>
[Flags]
public enum PduFlags : byte
{
    None = 0,
    /// <summary>HDGSTF: a header digest follows the PDU header.</summary>
    HeaderDigest = 0x01,
    /// <summary>DDGSTF: a data digest follows the PDU data.</summary>
    DataDigest = 0x02,
    /// <summary>LAST_PDU on H2CData / C2HData.</summary>
    LastPdu = 0x04,
    /// <summary>SUCCESS on C2HData: the command completed and no CapsuleResp follows.</summary>
    Success = 0x08,
}

/// <summary>Fatal Error Status of a TermReq (TCP 1.0, 3.6.2.4, Figure 30).</summary>
public enum TermReqFatalError : ushort
{
    InvalidPduHeaderField = 0x01,
    PduSequenceError = 0x02,
    HeaderDigestError = 0x03,
    DataTransferOutOfRange = 0x04,
    DataTransferLimitExceeded = 0x05,
    UnsupportedParameter = 0x06,
}
