global using CsiNvme.Protocol.Commands;
global using CsiNvme.Storage;
global using NUnit.Framework;
