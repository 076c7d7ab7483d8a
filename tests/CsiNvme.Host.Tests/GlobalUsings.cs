global using CsiNvme.Protocol.Commands;
global using NUnit.Framework;
