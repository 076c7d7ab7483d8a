global using System.Buffers.Binary;
global using CsiNvme.Protocol.Commands;
global using CsiNvme.Protocol.Tcp;
global using NUnit.Framework;
