global using System.Buffers.Binary;
global using NUnit.Framework;
